"""The `unetkit` command: parse, validate, call one library function, print.

Errors in use are one line on stderr naming the file or option and what to do,
with exit code 2; an interrupted training says how to resume it (exit 130; SIGTERM and SIGHUP, handled the same way: 143 and 129).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import errno
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from unetkit import __version__
from unetkit.config import SEED_LIMIT, TrainConfig, flag_of, parse_duration
from unetkit.errors import InputError
from unetkit.text import counted, printable, shell_word

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
OUT_OF_MEMORY_PHRASES = ("can't allocate memory", "Unable to allocate", "out of memory", "ALLOC_FAILED")
EXIT_BROKEN_PIPE = 141  # what a shell reports for a program its reader left (128 + SIGPIPE)
DATA_FOLDER_NAMES = {"images": ("image", "images", "img", "imgs"), "labels": ("label", "labels", "mask", "masks")}


def user_path(text: str) -> Path:
    """A path option: `~` is the home folder also where the shell leaves it (`--out=~/run`, `"~/data"`); else a
    folder literally named ~ was made in the working directory and the run was not where the user looked. Only
    `~` and `~/...`: a file named `~scan1.png` (or Word's `~$x`) is a name, not a user's home."""
    from unetkit.data.io import without_missing_dots

    if not text:
        raise argparse.ArgumentTypeError("an empty path; give a file or folder")  # not ".", the working folder
    if text == "~" or text.startswith(("~/", "~" + os.sep)):
        return without_missing_dots(Path(text).expanduser())
    return without_missing_dots(Path(text))


class Terminated(KeyboardInterrupt):
    """SIGTERM (`timeout`, a batch scheduler at the job's time limit, `docker stop`) or SIGHUP (the terminal or
    ssh connection closed), handled as Ctrl-C is: a run keeps what it learnt and is marked interrupted, a predict
    leaves only complete files. Without it the process died at once, its run.json still saying "training"."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = int(signum)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


def handle_termination() -> None:
    """SIGTERM and SIGHUP raise Terminated; a hangup that `nohup` set to be ignored stays ignored."""
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)  # Windows has no SIGHUP
        if number is not None and signal.getsignal(number) is not signal.SIG_IGN:
            signal.signal(number, _raise_terminated)


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors in our one-line style."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.partition(" ")[2]  # "unetkit" itself begins the error line already
        raise InputError(f"{command + ': ' if command else ''}{message}; see {self.prog} --help")

    def parse_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def,override]
        """Unknown arguments are the chosen subcommand's error, pointing to its help (argparse leaves them to
        the top parser, whose `unetkit --help` does not list train's flags)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self._chosen(parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _chosen(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        """The innermost subcommand parser that `parsed` went through (diffusion -> diffusion sample)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(parsed, action.dest, None) or "")
                if isinstance(chosen, _Parser):
                    return chosen._chosen(parsed)
        return self


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on image/label pairs", description="Train a U-Net on image/label pairs.")
    p.add_argument("data", nargs="?", type=user_path, help="a folder holding image/ and label/ folders (instead of --images/--labels)")
    p.add_argument("--images", type=user_path, help="folder of images (paired with masks by file stem) or one multi-page TIFF")
    p.add_argument("--labels", type=user_path, help="folder of masks, or one multi-page TIFF; their values become the classes")
    p.add_argument("--out", type=user_path, help="new run folder to write (weights, run.json, log.csv, curves.png)")
    p.add_argument("--resume", type=user_path, metavar="RUN",
                   help="continue an interrupted run from its last epoch (with --epochs, --budget as the new total, --device, --precision)")
    p.add_argument("--from", type=user_path, dest="start_from", metavar="RUN",
                   help="fine-tune a trained run on new pairs: its network, weights, classes and normalisation are kept")
    p.add_argument("--val-images", type=user_path, help="validation images (default: hold out the last block of the training images)")
    p.add_argument("--val-labels", type=user_path, help="validation masks, with --val-images")
    p.add_argument("--val-fraction", type=float, help="fraction held out as a contiguous block for validation (default 0.2)")
    p.add_argument("--recipe",  # None when not given, so that --resume can tell it was
                   help="default (CPU-friendly, budgeted), seed (the tutorial, exactly) or paper (Ronneberger et al. 2015)")
    p.add_argument("--model", help="network: unet (padded), unet-classic (the paper's valid convolutions), or the FCN baselines fcn8s, fcn16s, fcn32s")
    p.add_argument("--budget", help="wall-clock limit including validation, e.g. 90s, 10m, 1h")
    p.add_argument("--epochs", type=int, help="number of epochs (instead of a budget)")
    p.add_argument("--width", type=int, dest="base_width", help="channels of the first level (doubles each level)")
    p.add_argument("--depth", type=int, help="number of poolings")
    p.add_argument("--upsampling", choices=["bilinear", "transposed"], help="bilinear upsampling or 2x2 transposed convolutions")
    p.add_argument("--residual", action="store_const", const=True,
                   help="residual double convolutions (each adds its input back, as in ResNet): the padded U-Net only")
    p.add_argument("--loss", help="ce+dice, ce, dice, weighted-ce (the paper's border weights), or bce (one sigmoid output)")
    p.add_argument("--optimizer", help="adamw, rmsprop or sgd")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--batch-size", type=int, help="samples per step")
    p.add_argument("--patch-size", type=int, help="side of the square training patches")
    p.add_argument("--augment", help="default (flips, rotations, intensity), paper (+ elastic, any angle, grey values), "
                                     "strong (paper + zoom, larger grey changes), seed (random flips) or none")
    p.add_argument("--ignore-value", type=boundary_value, metavar="V",
                   help="mask value of unlabelled pixels (sparse labels: annotate some regions, paint the rest V): "
                        "no loss, no score, never predicted; a value or R,G,B")
    p.add_argument("--pixel-size", metavar="LENGTH",
                   help="the training images' pixel size (e.g. 4nm, 0.65um) where their files declare none or a wrong "
                        "one: run.json keeps it, and predict compares inputs with it (--match-pixel-size)")
    p.add_argument("--match-pixel-size", action="store_true",
                   help="resample training images whose files declare other pixel sizes to their median one (images "
                        "linearly, masks by nearest neighbour), so the network learns one scale")
    p.add_argument("--mask-kind", choices=("auto", "classes", "instances"),
                   help="instances: the masks are object ids (nuclei 1..N on 0): learn the objects and the borders "
                        "between touching ones, then `predict --instances` separates them; classes: the values are "
                        "classes; auto (default): classes, and masks that look like instance ids, smoothed "
                        "(antialiased) edges or a mask in another encoding are refused")
    p.add_argument("--synthetic", metavar="RUN", type=user_path, help="a `unetkit diffusion train --labels` run: mix its images for deformed training labels into the patches")
    p.add_argument("--synthetic-fraction", type=float, help="share of the patches that are synthetic (default 0.25)")
    p.add_argument("--synthetic-count", type=int, help="synthetic pairs to generate before training (default 64)")
    p.add_argument("--ema", type=float, help="decay of the moving average of the weights that is validated and saved (0: off; planned by default)")
    p.add_argument("--seed", type=seed_number, help="random seed (same seed, same run: with --epochs the plan is made for a reference machine, so it does not depend on how busy this one is; a --budget run plans from this machine's speed, give --width to fix the network)")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto (default: bf16 autocast on CPUs where it is faster, AMP on a GPU), fp32, bf16, fp16 (GPU)")
    p.add_argument("--no-align", action="store_true",
                   help="do not shift the outputs to the labels' sub-pixel convention measured on the validation images")
    p.add_argument("--no-plan", action="store_true",
                   help="use the recipe's fixed values instead of planning patch, batch, width, depth and loss")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def boundary_value(text: str) -> int:
    """--boundary-value, --ignore-value: a label value (0, 255) or an R,G,B colour (data.labels.parse_label_value)."""
    from unetkit.data.labels import parse_label_value

    try:
        return parse_label_value(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seed_number(text: str) -> int:
    """--seed, for every command (demo and diffusion too, which build no TrainConfig; numpy refused -5 with a traceback)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: not a whole number") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"{text}: must be 0 to {SEED_LIMIT - 1}")
    return value


def _add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="check image/mask pairs before training: a table of what they hold, every problem",
                       description="Pair, read and inspect images and masks; exit 2 if anything would stop or spoil training.")
    p.add_argument("data", nargs="?", type=user_path, help="a folder holding image/ and label/ folders (instead of --images/--labels)")
    p.add_argument("--images", type=user_path, help="folder of images, or one multi-page TIFF")
    p.add_argument("--labels", type=user_path, help="folder of masks, or one multi-page TIFF")
    p.add_argument("--run", type=user_path, help="a trained run: masks must hold its classes and images its channels (fine-tuning, evaluation)")
    p.add_argument("--val-fraction", type=float, default=TrainConfig.val_fraction,
                   help="the share `train` will hold out (default 0.2): classes only its masks hold are errors; "
                        "0 when you will train with --val-images/--val-labels")
    p.add_argument("--ignore-value", type=boundary_value, metavar="V",
                   help="mask value of unlabelled pixels, as train takes it: not a class")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment images with a trained run", description="Write one mask per input image.")
    p.add_argument("run", type=user_path, help="the run folder written by `unetkit train`")
    p.add_argument("inputs", type=user_path, nargs="+", help="image files, folders or multi-page TIFF stacks (any size)")
    p.add_argument("--out", type=user_path, required=True, help="output folder (never an input folder)")
    p.add_argument("--tta", action="store_true", help="average over the 8 flips/rotations (slower, usually better)")
    p.add_argument("--prob", action="store_true", help="also write float32 class probabilities as NAME_prob.tif")
    p.add_argument("--instances", nargs="?", const="auto", choices=["auto", "cells", "objects"],
                   help="also write NAME_cells.tif, one label per instance of a two-class run: cells that a boundary "
                        "labelling separates (seeded watershed on the boundary probability), or objects on background 0 "
                        "(nuclei on black); auto (the default): objects when the boundary class covered most of the "
                        "training masks")
    p.add_argument("--boundary-value", type=boundary_value,
                   help="with --instances: the boundary's label value, or R,G,B for colour masks (default 0: black)")
    p.add_argument("--tile", type=int, help="window size for large images (default: one pass, or the windows that fit in a quarter of the free memory and compute least; unet-classic: the run's tile setting, 512 px input tiles or 572 under --recipe paper)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   help="compute in this precision (default: the run's; auto = bf16 where faster, AMP on a GPU)")
    p.add_argument("--skip-done", action="store_true",
                   help="leave the inputs whose outputs --out already holds, written by this run with these options from "
                        "the input as it is now (a stopped predict goes on where it stopped, a stack from its next page)")
    p.add_argument("--match-pixel-size", action="store_true",
                   help="resample each input whose pixel size differs from the training images' to theirs for the "
                        "network, and its probabilities back (masks stay on the input's pixels)")
    p.add_argument("--pixel-size", metavar="LENGTH",
                   help="the inputs' pixel size (e.g. 8nm, 0.65um), in place of what their files declare (PNG exports "
                        "often declare none); their outputs declare it")
    p.add_argument("--training-pixel-size", metavar="LENGTH",
                   help="the training images' pixel size, for a run whose run.json has none (train --pixel-size "
                        "records it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score predicted masks against true masks")
    p.add_argument("--pred", type=user_path, required=True, help="predicted masks (folder or stack)")
    p.add_argument("--labels", type=user_path, required=True, help="true masks, paired by file stem")
    p.add_argument("--json", type=user_path, help="also write the scores to this JSON file")
    p.add_argument("--instances", choices=["threshold", "watershed"],
                   help="score NAME_prob.tif probability maps (from predict --prob): the threshold 0.1..0.9 best for the whole set, or watershed regions")
    p.add_argument("--objects", action="store_true",
                   help="score objects: NAME_cells.tif (predict --instances) or instance masks against true instance "
                        "masks (objects 1..N on 0): matched at IoU 0.5, precision, recall, F1, and the score over IoU 0.5-0.95")
    p.add_argument("--boundary-value", type=boundary_value,
                   help="label value (or R,G,B colour) of the boundary class for the ISBI challenge scores (Rand, VI); "
                        "default 0 (membrane)")
    p.add_argument("--ignore-value", type=boundary_value, metavar="V",
                   help="true masks' value of unlabelled pixels (sparse labels): those pixels are not scored")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train and predict on built-in data, write pictures")
    p.add_argument("--out", type=user_path, default=Path("demo-output"), help="folder for data, run, predictions and pictures")
    p.add_argument("--data", type=user_path, help="ISBI 2012 folder (default: $UNETKIT_DATA, else synthetic EM-like data)")
    p.add_argument("--budget", default="3m", help="training time (default 3m)")
    p.add_argument("--seed", type=seed_number, default=0, help="random seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_diffusion(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diffusion", help="train a diffusion U-Net on images, sample images (optionally for given label maps)",
                       description="The U-Net of diffusion models: learn to denoise, then generate.")
    actions = p.add_subparsers(dest="action", metavar="train|sample", required=True, parser_class=_Parser)
    t = actions.add_parser("train", help="train a denoiser on patches of the images (label-conditioned with --labels)")
    t.add_argument("--images", type=user_path, required=True, help="folder of images or one multi-page TIFF")
    t.add_argument("--labels", type=user_path, help="masks paired with the images: the model learns images for given label maps")
    t.add_argument("--out", type=user_path, required=True, help="new run folder")
    t.add_argument("--size", type=int, default=64, help="side of the square training patches (default 64)")
    t.add_argument("--budget", help="wall-clock limit, e.g. 90s, 30m (default 30m, none with --steps alone; "
                   "both given: whichever comes first)")
    t.add_argument("--steps", type=int, help="stop after this many steps (instead of the budget)")
    t.add_argument("--width", type=int, default=32, dest="base_width", help="channels of the first level (default 32)")
    t.add_argument("--batch-size", type=int, default=16, help="patches per step (default 16)")
    t.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate (default 5e-4)")
    t.add_argument("--prediction", choices=["eps", "v"], default="eps", help="regress the noise (eps) or the velocity (v)")
    t.add_argument("--schedule", choices=["cosine", "linear"], default="cosine", help="noise schedule (default cosine)")
    t.add_argument("--seed", type=seed_number, default=0, help="random seed")
    t.add_argument("--device", default="auto", help="auto, cpu or cuda")
    t.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto", help="compute precision")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    s = actions.add_parser("sample", help="generate images with a trained diffusion run")
    s.add_argument("run", type=user_path, help="the run folder written by `unetkit diffusion train`")
    s.add_argument("--out", type=user_path, required=True, help="a new or empty folder (or one of earlier samples, which are "
                   "replaced) for the PNGs and grid.png (no grid for masks of several sizes)")
    s.add_argument("--n", type=int, help="number of samples without --labels (default 16)")
    s.add_argument("--labels", type=user_path, help="label maps: one sample for each, written beside a copy of it")
    s.add_argument("--steps", type=int, help="DDIM steps (default 50)")
    s.add_argument("--sampler", choices=["ddim", "ddpm"], default="ddim", help="DDIM (eta 0, --steps) or DDPM (all steps)")
    s.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale with --labels (1 = none)")
    s.add_argument("--size", type=int, help="side of unconditional samples (default: the training patch size)")
    s.add_argument("--seed", type=seed_number, default=0, help="random seed (same seed, same samples)")
    s.add_argument("--device", default="auto", help="auto, cpu or cuda")
    s.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a run's network as ONNX and TorchScript files (a bioimage.io package)",
                       description="Write a trained run as stand-alone ONNX and TorchScript networks that take raw "
                                   "images and return probabilities and masks, with a bioimage.io rdf.yaml, test "
                                   "tensors and a README: for Fiji (deepImageJ), ilastik or a script without unetkit.")
    p.add_argument("run", type=user_path, help="a trained run folder")
    p.add_argument("--out", type=user_path, required=True, help="new folder to write, or a new FILE.zip (the bioimage.io package)")
    p.add_argument("--format", default="onnx,torchscript", help="onnx, torchscript or both, comma-separated (default both)")
    p.add_argument("--name", help="the model's name in rdf.yaml (default: the run folder's name, as bioimage.io "
                                         "allows it)")
    p.add_argument("--author", help="the author in rdf.yaml (default: your login name)")
    p.add_argument("--license", default="CC-BY-4.0", help="SPDX licence of the exported model (default CC-BY-4.0)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="unetkit", description="U-Net segmentation for microscopy images, fast on a CPU.")
    parser.add_argument("--version", action="version", version=f"unetkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_demo, _add_train, _add_check, _add_predict, _add_evaluate, _add_export, _add_diffusion):
        add(sub)
    return parser


def _data_folders(data: Path) -> tuple[Path, Path]:
    """DATA/image + DATA/label (or images/labels, masks)."""
    from unetkit.data.zarr_pages import is_zarr

    if data.is_file() or is_zarr(data):
        kind = "a zarr image" if data.is_dir() else "a file"
        raise InputError(f"{data}: is {kind}; give a folder holding image/ and label/, or the images and masks as "
                         "--images and --labels (a folder, a multi-page TIFF or a zarr each)")
    if not data.is_dir():
        raise InputError(f"{data}: no such folder; give a folder holding image/ and label/, or use --images and --labels")
    found = {}
    for role, names in DATA_FOLDER_NAMES.items():
        present = list({(data / n).resolve(): data / n for n in names if (data / n).is_dir()}.values())
        if len(present) > 1:  # the first name took it, and the other folder was left out without a word
            raise InputError(f"{data}: holds {present[0].name}/ and {present[1].name}/, both names for its {role}; keep "
                             f"one, or give the folders as --images and --labels")
        found[role] = present[0] if present else None
        if found[role] is None:
            if data.name.lower() in (*DATA_FOLDER_NAMES["images"], *DATA_FOLDER_NAMES["labels"]):  # pointed inside DATA
                raise InputError(f"{data}: is a folder of {data.name}, not DATA; give the folder that holds it "
                                 f"({data.resolve().parent}), or use --images and --labels")
            raise InputError(f"{data}: has no {names[0]}/ folder; put the {role} in {data / names[0]} or use --{role}")
    return found["images"], found["labels"]


def _pair_arguments(args: argparse.Namespace, command: str) -> tuple[Path, Path]:
    """--images and --labels, or the image/ and label/ folders of DATA."""
    if args.data:
        if args.images or args.labels:
            raise InputError("give DATA or --images/--labels, not both")
        return _data_folders(args.data)
    if not args.images or not args.labels:
        raise InputError(f"{command} needs --images PATH --labels PATH (or DATA); see unetkit {command} --help")
    return args.images, args.labels


# What `train --resume` takes besides the run: when to stop, where and how to compute (the rest is the run's).
RESUME_FLAGS = frozenset({"command", "resume", "epochs", "budget", "device", "precision", "quiet", "started"})


def _run_train(args: argparse.Namespace) -> None:
    from unetkit.api import training_config
    from unetkit.train.start import resume, train

    budget = parse_duration(args.budget) if args.budget else None
    if args.resume:
        if args.out or args.images or args.data:
            raise InputError("--resume RUN continues a run on its own data; drop --out, --images/--labels and DATA")
        ignored = sorted(flag_of(name) for name, value in vars(args).items()
                         if name not in RESUME_FLAGS and value is not None and value is not False)  # --ema 0 is given
        if ignored:
            raise InputError(f"--resume RUN continues a run as it was set up; drop {', '.join(ignored)} "
                             "(only --epochs, --budget, --device, --precision and --quiet apply)")
        resume(args.resume, epochs=args.epochs, budget_s=budget, progress=not args.quiet, device=args.device,
               precision=args.precision, began=args.started)
        return
    args.images, args.labels = _pair_arguments(args, "train")
    if not args.out:
        raise InputError("train needs --out RUN (a new folder for the run); see unetkit train --help")
    alone = [(flag, value) for flag, value in (("--synthetic-fraction", args.synthetic_fraction),
                                               ("--synthetic-count", args.synthetic_count)) if value is not None]
    if alone and args.synthetic is None:  # trained without synthetic pairs, and not a word said
        raise InputError(f"{' and '.join(f'{flag} {value:g}' for flag, value in alone)}: say how synthetic pairs are "
                         f"mixed in; add --synthetic DIFFUSION_RUN, or drop {' and '.join(flag for flag, _ in alone)}")
    overrides = dict(
        model=args.model, base_width=args.base_width, depth=args.depth, loss=args.loss, optimizer=args.optimizer,
        lr=args.lr, batch_size=args.batch_size, patch_size=args.patch_size, augment=args.augment, seed=args.seed,
        device=args.device, val_fraction=args.val_fraction, precision=args.precision, ema=args.ema,
        synthetic=None if args.synthetic is None else str(args.synthetic), synthetic_fraction=args.synthetic_fraction,
        synthetic_count=args.synthetic_count,
        bilinear=None if args.upsampling is None else args.upsampling == "bilinear",
        align_outputs=False if args.no_align else None, residual=args.residual, ignore_value=args.ignore_value,
        mask_kind=args.mask_kind, pixel_size=args.pixel_size, match_pixel_size=args.match_pixel_size or None,
    )
    config, fixed = training_config(args.recipe or "default", overrides, args.epochs, budget, plan=not args.no_plan)
    train(args.images, args.labels, args.out, config, args.val_images, args.val_labels, progress=not args.quiet,
          fixed=fixed, start_from=args.start_from, began=args.started)
    print(f"run written to {args.out} (model.safetensors, run.json, log.csv, curves.png)")


def _run_check(args: argparse.Namespace) -> None:
    from unetkit.api import check
    from unetkit.data.validate import format_report

    images, labels = _pair_arguments(args, "check")
    report = check(images, labels, run=args.run, val_fraction=args.val_fraction, ignore_value=args.ignore_value)
    print(format_report(report))
    if report.errors:
        use = f"using them with {args.run}" if args.run else "training"  # --run: fine-tuning, or scoring the run
        raise InputError(f"{images}, {labels}: {counted(len(report.errors), 'problem')} above; fix them before {use}")


def _run_predict(args: argparse.Namespace) -> None:
    from unetkit.predict_files import predict_paths

    if args.boundary_value is not None and not args.instances:
        raise InputError(f"--boundary-value {args.boundary_value}: names the boundary class for --instances; add "
                         "--instances, or drop it")
    boundary = 0 if args.boundary_value is None else args.boundary_value
    predict_paths(args.run, args.inputs, args.out, tta=args.tta, write_probabilities=args.prob,
                  device=args.device, tile=args.tile, progress=not args.quiet, precision=args.precision,
                  instances=boundary if args.instances else None, instance_kind=args.instances or "auto",
                  skip_done=args.skip_done, match_pixel_size=args.match_pixel_size, pixel_size=args.pixel_size,
                  training_pixel_size=args.training_pixel_size)


def _run_evaluate(args: argparse.Namespace) -> None:
    from unetkit.evaluate import (check_json_target, evaluate_objects, evaluate_paths, evaluate_probabilities,
                                  format_challenge_table, format_object_table, format_table,
                                  refuse_options_beside_objects, write_json)

    if args.json:
        check_json_target(args.json, args.labels)
    boundary = 0 if args.boundary_value is None else args.boundary_value
    if args.objects:
        refuse_options_beside_objects({"--instances": args.instances, "--boundary-value": args.boundary_value,
                                       "--ignore-value": args.ignore_value})
        scores = evaluate_objects(args.pred, args.labels)
        print(format_object_table(scores))
    elif args.instances:
        scores = evaluate_probabilities(args.pred, args.labels, args.instances, boundary, args.ignore_value)
        print(format_challenge_table(scores))
    else:  # a boundary value given must be a class; the default 0 only adds the scores where it is one
        scores = evaluate_paths(args.pred, args.labels, boundary_value=boundary,
                                boundary_required=args.boundary_value is not None, ignore_value=args.ignore_value)
        print(format_table(scores))
    if args.json:
        write_json(scores, args.json)


def _run_export(args: argparse.Namespace) -> None:
    from unetkit.api import export

    formats = tuple(part.strip() for part in args.format.split(",") if part.strip())
    export(args.run, args.out, formats=formats, name=args.name, author=args.author, license=args.license)
    print(f"exported to {args.out} ({', '.join(formats)}; rdf.yaml for bioimage.io, README.md)")


def _run_demo(args: argparse.Namespace) -> None:
    from unetkit.demo import run_demo

    run_demo(args.out, data=args.data, budget_s=parse_duration(args.budget), seed=args.seed, progress=not args.quiet)


def _run_diffusion(args: argparse.Namespace) -> None:
    if args.action == "train":
        from unetkit.diffusion.training import DiffusionConfig, train_diffusion

        config = DiffusionConfig(
            size=args.size, base_width=args.base_width, batch_size=args.batch_size, lr=args.lr, prediction=args.prediction,
            schedule=args.schedule, seed=args.seed, device=args.device, precision=args.precision, steps=args.steps,
            budget_s=parse_duration(args.budget) if args.budget else None if args.steps is not None else DiffusionConfig.budget_s,
        )
        train_diffusion(args.images, args.labels, args.out, config, progress=not args.quiet)
        print(f"run written to {args.out} (model.safetensors, run.json, log.csv)")
    else:
        from unetkit.diffusion.generate import sample_to_folder

        for flag, value in (("--n", args.n), ("--steps", args.steps)):
            if value is not None and value < 1:
                raise InputError(f"{flag} {value}: must be at least 1")
        if args.labels is not None:  # one sample per mask, the mask's size: these would be dropped without a word
            given = [flag for flag, value in (("--n", args.n), ("--size", args.size)) if value is not None]
            if given:
                raise InputError(f"{' and '.join(given)}: --labels draws one sample per mask, at the mask's size; drop "
                                 f"{' and '.join(given)}")
        if args.sampler == "ddpm" and args.steps is not None:
            raise InputError(f"--steps {args.steps}: DDPM takes every step of the run's schedule; use --sampler ddim for "
                             "fewer steps, or drop --steps")
        given = {name: value for name, value in (("count", args.n), ("steps", args.steps)) if value is not None}
        sample_to_folder(args.run, args.out, labels=args.labels, seed=args.seed, sampler=args.sampler,
                         guidance=args.guidance, size=args.size, device=args.device, progress=not args.quiet, **given)


COMMANDS = {"train": _run_train, "check": _run_check, "predict": _run_predict, "evaluate": _run_evaluate, "demo": _run_demo,
            "export": _run_export, "diffusion": _run_diffusion}


def _saved_run(args: argparse.Namespace | None) -> Path | None:
    """The run a `train` command has saved (its run.json is there), which `--resume` continues; else None."""
    if getattr(args, "command", "") != "train":
        return None
    run = args.resume or args.out
    # os.path.isfile: False for any path it cannot stat (Path.is_file raises for a name too long)
    return Path(run) if run is not None and os.path.isfile(Path(run) / "run.json") else None


def _resume_hint(args: argparse.Namespace | None) -> str:
    """After a failed `train` that saved a run: that it can continue."""
    return " (the run continues with --resume)" if _saved_run(args) else ""


def _interrupt_hint(args: argparse.Namespace | None) -> str:
    """What an interrupted command leaves: a run that resumes (named), or nothing yet."""
    command = getattr(args, "command", "")
    if command == "train":
        run = _saved_run(args)
        if run is None:
            return "; nothing was saved yet"
        from unetkit.train.checkpoint import WEIGHTS_FILE
        from unetkit.train.start import has_resume_state

        if not has_resume_state(run) and not os.path.exists(run / WEIGHTS_FILE):  # stopped before a save
            return f"; nothing was trained yet: `unetkit train --resume {shell_word(run)}` starts it again"
        return f"; continue with `unetkit train --resume {shell_word(run)}`"
    if command == "diffusion":
        return "; a diffusion run keeps its weight average of the last minute in RUN/model.safetensors"
    if command == "predict" and args.out is not None and Path(args.out).is_dir():
        from unetkit.stack_outputs import unfinished_stacks

        done = sum(1 for p in Path(args.out).iterdir() if not p.name.startswith("."))
        again = "the same command again" if args.skip_done else "the same command with --skip-done"
        given = {Path(path).resolve() for path in args.inputs}  # a stack given, or one in a folder given
        pages = "".join(f", and {done_pages} of the {total} pages of {file.name} (kept aside until all are done)"
                        for file, done_pages, total, _ in unfinished_stacks(Path(args.out))
                        if file in given or file.parent in given)
        return (f"; {args.out} holds {counted(done, 'complete file')} (none half-written){pages}; {again} goes on "
                "with what is not yet predicted")
    return ""


def _value_options(parser: argparse.ArgumentParser) -> set[str]:
    """The options of `parser` and its subcommands that take a value (not the on/off flags)."""
    options: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                options |= _value_options(sub)
        elif action.option_strings and action.nargs != 0:
            options.update(action.option_strings)
    return options


def _attach_negative_values(argv: list[str], takes_value: set[str]) -> list[str]:
    """`--budget -5s` -> `--budget=-5s`: argparse takes a value like -5s for an option and reports the value
    missing; attached, it reaches the option's own check, which says what is allowed. Only options that
    take a value, and nothing after `--`."""
    out: list[str] = []
    for index, token in enumerate(argv):
        if token == "--":
            return out + argv[index:]
        if out and out[-1] in takes_value and re.fullmatch(r"-\.?\d.*", token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


# What to do about an OSError met while working, by its errno (a full disk is the usual one)
OS_ERROR_FIXES = {
    errno.EACCES: "choose a folder you can write to, or change its permissions, then run again",
    errno.EPERM: "choose a folder you can write to, or change its permissions, then run again",
    errno.EROFS: "the disk is read-only; choose a folder on another disk, then run again",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path, then run again",
    errno.EISDIR: "a folder stands where a file is written; choose another path, then run again",
    errno.ENOENT: "a folder went away while unetkit worked; check the path, then run again",
    errno.ENAMETOOLONG: "a name in the path is too long for the file system; choose a shorter path, then run again",
    errno.ELOOP: "a symbolic link in the path points back to itself (a loop); fix or remove it, then run again",
}


@contextlib.contextmanager
def _printable_names() -> Iterator[None]:
    """A file name that is not UTF-8 (an old share's Latin-1, held by Python with surrogates) is printed escaped
    (\\udce9) by a stream that would raise UnicodeEncodeError after the command's work was done. Streams that
    print such names already (surrogateescape under a C locale: the name's own bytes) are left alone, and the
    streams are put back afterwards for a program that calls main()."""
    changed = []
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict":
            try:
                stream.reconfigure(errors="backslashreplace")
                changed.append(stream)
            except (AttributeError, ValueError, OSError):  # not a text stream of its own (an embedding program's)
                pass
    try:
        yield
    finally:
        for stream in changed:
            try:
                stream.reconfigure(errors="strict")
            except (ValueError, OSError):  # closed meanwhile
                pass


def main(argv: list[str] | None = None) -> int:
    with _printable_names():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    started = time.monotonic()  # a --budget counts from the command's start: loading torch takes seconds too
    args = None
    try:
        parser = build_parser()
        args = parser.parse_args(_attach_negative_values(sys.argv[1:] if argv is None else list(argv), _value_options(parser)))
        from unetkit.data.io import max_pixels

        max_pixels()  # a bad UNETKIT_MAX_PIXELS is said once, not once per file
        args.started = started
        COMMANDS[args.command](args)
    except InputError as exc:
        print(f"unetkit: error: {printable(str(exc))}", file=sys.stderr)  # a newline in a file name: still one line
        return EXIT_USAGE
    except BrokenPipeError:  # `unetkit check ... | head`: the reader has gone, so there is no one to tell
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # or Python's exit flush raises again
        except (OSError, ValueError):  # stdout is no file descriptor (an embedding program's stream)
            pass
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # a disk that fills up or a folder that goes away while writing: say where, no traceback
        where = exc.filename or "writing the output"
        fix = OS_ERROR_FIXES.get(exc.errno, "free space or choose another folder, then run again")
        print(printable(f"unetkit: error: {where}: {exc.strerror or exc}; {fix}{_resume_hint(args)}"), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        how = f"terminated ({signal.Signals(exc.signum).name})" if isinstance(exc, Terminated) else "interrupted"
        try:
            print(f"unetkit: {how}{_interrupt_hint(args)}", file=sys.stderr)
        except (OSError, ValueError):  # after a hangup the terminal is gone: the exit code still tells
            pass
        return 128 + exc.signum if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    except (MemoryError, RuntimeError) as exc:  # torch says "can't allocate memory" / "out of memory" as RuntimeError
        text = str(exc)
        loop = re.fullmatch(r"Symlink loop from (.*)", text, re.DOTALL)  # Path.resolve() before Python 3.13: repr
        if loop:
            try:
                where = ast.literal_eval(loop.group(1))
            except (ValueError, SyntaxError):
                where = loop.group(1)
            print(f"unetkit: error: {where}: {OS_ERROR_FIXES[errno.ELOOP]}", file=sys.stderr)
            return EXIT_USAGE
        if not (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
                or any(phrase in text for phrase in OUT_OF_MEMORY_PHRASES)):
            raise  # a bug keeps its traceback
        print(f"unetkit: error: not enough memory ({text.splitlines()[0][:160] if text else 'MemoryError'}); use a smaller "
              f"--batch-size, --width, --patch-size, --size or --tile{_resume_hint(args)}", file=sys.stderr)
        return EXIT_USAGE
    return 0


class ForgivingStream:
    """stderr whose failures are swallowed: with it closed (`2>&-`, sys.stderr None) or full (`2>/dev/full`) the
    progress bar's first write ended a predict (exit 1, nothing written) or a training (run.json left "training")
    without a word (audit). What cannot be shown is lost; the work and the exit code are not."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (OSError, ValueError, AttributeError):  # AttributeError: no stream at all (None)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError, AttributeError):
            pass

    def isatty(self) -> bool:
        try:
            return bool(self._stream.isatty())
        except (OSError, ValueError, AttributeError):
            return False

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, ...: the stream's own
        return getattr(self._stream, name)


def entry() -> None:
    """The `unetkit` command: main(), then an exit that skips the interpreter's teardown.

    Everything a command writes is complete when main() returns (files are closed, or renamed into place);
    tearing down torch then took 0.6-1.4 s more, outside the --budget that counts from the start (a 20 s run
    took 21.5 s of wall time). SIGTERM and SIGHUP are handled as Ctrl-C (Terminated)."""
    handle_termination()
    sys.stderr = ForgivingStream(sys.stderr)  # type: ignore[assignment]
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except BrokenPipeError:  # the reader left before the last lines: as main() reports it
            code = code or EXIT_BROKEN_PIPE
        except (OSError, ValueError):  # a closed stream: nothing more can be said
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
