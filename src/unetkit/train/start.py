"""Start a run or continue one: read and check the data, build the Trainer, say what it will do.

`train()` writes a new run folder; `resume()` continues one from its last saved
round with the run's own classes and normalisation.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

from unetkit.config import TrainConfig, flag_of
from unetkit.data.calibration import matched_pixel_size, parse_length, pixel_size_record, training_pixel_size
from unetkit.data.io import list_image_files
from unetkit.data.labels import IGNORE_CLASS, LabelEncoding
from unetkit.data.validate import INSTANCES
from unetkit.devices import resolve_device
from unetkit.engine import autocast_dtype, configure_process
from unetkit.engine import describe as describe_engine
from unetkit.errors import InputError
from unetkit.folder_lock import folder_lock
from unetkit.models import unet_valid as valid_net
from unetkit.models.registry import check_model_name
from unetkit.run import (
    check_new_run_folder,
    check_writable_folder,
    claimed_run_folder,
    load_run,
    model_options,
    new_run_record,
    read_run_json,
    refuse_inside_inputs,
    saved_settings,
    write_run_json,
)
from unetkit.text import counted, shell_word
from unetkit.train.checkpoint import RESUME_DIR, RESUME_FILE, WEIGHTS_FILE, remove_partial_writes
from unetkit.train.fingerprint import (class_fractions, data_fingerprint, machine_fingerprint, reference_machine,
                                      step_timer)
from unetkit.train.planning import plan_training, refine_width
from unetkit.train.setup import TrainingData, prepare_training_data
from unetkit.train.trainer import VALIDATION_SHARE, VALIDATIONS_PER_BUDGET, Trainer


def plan_run(config: TrainConfig, data: TrainingData, fixed: frozenset[str], used_s: float = 0.0
             ) -> tuple[TrainConfig, dict[str, Any]]:
    """Fingerprint the data and the machine, plan what `fixed` leaves open: the planned config and
    the plan for run.json. `used_s`: seconds of the budget already spent (loading, reading, checking)."""
    device = resolve_device(config.device)
    configure_process()
    dtype = autocast_dtype(device, config.precision)
    data_print = data_fingerprint(data)
    patch = config.patch_size if "patch_size" in fixed and config.patch_size else min(data_print.height, data_print.width)
    if config.epochs and not config.budget_s:  # no clock to fill: plan for a reference machine, so that runs repeat
        machine, seconds = reference_machine(device, dtype), 0.0
    else:
        machine, seconds = machine_fingerprint(device, dtype, config.channels_last, data.in_channels,
                                               data_print.classes, patch, config.budget_s)
    # the steps that fit are those of the time left: a 20 s run that spent 12 s reading and probing has 8 s to train
    budget = max(1.0, config.budget_s - used_s - seconds) if config.budget_s else None
    plan = plan_training(data_print, machine, budget, {name: getattr(config, name) for name in fixed}, config.epochs)
    measured: dict[int, float] = {}
    if budget and not config.epochs:  # the model misjudges narrow networks: short budgets too (a few steps, ~1 s)
        started = time.monotonic()
        timer = step_timer(device, dtype, config.channels_last, data.in_channels, data_print.classes, plan.depth,
                           plan.patch_size, plan.batch_size, config.residual, config.bilinear)
        plan, measured = refine_width(plan, data_print, machine, budget, timer, width_fixed="base_width" in fixed,
                                      ema_fixed="ema" in fixed, bilinear=config.bilinear)
        seconds += time.monotonic() - started
    choices = {name: value for name, value in plan.choices().items() if name not in fixed}
    record = {"data": data_print.to_json(), "machine": machine.to_json(), **plan.to_json(),
              "measured_step_seconds": {str(width): round(step_s, 4) for width, step_s in measured.items()},
              "fixed_by_user": sorted(set(fixed) & set(plan.choices())), "probe_seconds": round(seconds, 2)}
    return replace(config, **choices), record


def _describe_network(options: dict[str, Any], model: str) -> str:
    """What the network has, from the options it was built with (an FCN has no depth or upsampling choice)."""
    words = [model, f"width {options['base_width']}"]
    if "depth" in options:
        words.append(f"depth {options['depth']}")
    if "bilinear" in options:
        words.append("bilinear" if options["bilinear"] else "transposed-conv")
    elif model == "unet-classic":
        words.append("transposed-conv, valid convolutions")
    if options.get("residual"):
        words.append("residual blocks")
    return " ".join(words)


SMALL_VALID_OUTPUT = 32  # a valid network's patch with a smaller output spends nearly all its work on context


def _valid_network_patch(config: TrainConfig, data: TrainingData, fixed: frozenset[str],
                         say: Callable[[str], None]) -> TrainConfig:
    """The paper's unpadded U-Net takes --patch-size as its input tile, which loses 2 x 92 px (depth 4): the
    default recipe's 128 px became a 188 px input with 4 x 4 outputs. Unless given, the patch is the input whose
    output covers the recipe's patch (or the largest image, if smaller); a given one that leaves little is said."""
    if config.model != "unet-classic" or config.patch_size is None:
        return config
    largest = max(max(y.shape[-2:]) for y in data.train.labels)
    if "patch_size" not in fixed:
        return replace(config, patch_size=valid_net.input_size_for_output(min(config.patch_size, largest), config.depth))
    tile = valid_net.nearest_valid_input_size(config.patch_size, config.depth)
    output = valid_net.valid_output_size(tile, config.depth)
    if output < SMALL_VALID_OUTPUT:
        better = valid_net.input_size_for_output(min(TrainConfig.patch_size, largest), config.depth)
        side = valid_net.valid_output_size(better, config.depth)
        say(f"warning: --patch-size {config.patch_size} is the unpadded U-Net's input tile: {tile} px in, only "
            f"{output} x {output} out; --patch-size {better} gives outputs of {side} x {side}")
    elif tile != config.patch_size:
        say(f"note: --patch-size {config.patch_size} is not a size the unpadded U-Net takes; it trains on {tile} px "
            f"tiles ({output} x {output} out), the nearest")
    return replace(config, patch_size=tile)  # run.json records the tile trained on


def _describe_sizes(sizes: list[tuple[int, int]]) -> str:
    """Training image sizes as `check` writes them (width x height): "512 x 512", or the smallest and largest of several."""
    if len(sizes) == 1:
        return f"{sizes[0][1]} x {sizes[0][0]}"
    smallest, largest = min(sizes, key=lambda s: s[0] * s[1]), max(sizes, key=lambda s: s[0] * s[1])
    return f"{len(sizes)} sizes from {smallest[1]} x {smallest[0]} to {largest[1]} x {largest[0]}"


def _describe(trainer: Trainer, patch_given: bool) -> list[str]:
    """The lines printed before training; `patch_given`: the patch size came from --patch-size, not a recipe."""
    data, config = trainer.data, trainer.config
    params = sum(p.numel() for p in trainer.model.parameters())
    stop = [counted(config.epochs, "epoch") if config.epochs else "", f"budget {config.budget_s:.0f} s" if config.budget_s else ""]
    return [
        f"data: {counted(len(data.train), 'training image')} of {_describe_sizes(trainer.image_sizes)} and "
        f"{counted(len(data.val), 'validation image')}, {counted(data.in_channels, 'channel')}",
        f"classes: {data.encoding.describe_values()} -> 0..{data.encoding.num_classes - 1}",
        f"model: {_describe_network(trainer.record['model']['options'], config.model)}, "
        f"{params / 1e6:.2f} M parameters, on {trainer.device}",
        f"training: recipe {config.recipe}, {config.loss} loss, {config.optimizer} lr {config.lr:g}, batch {config.batch_size} of "
        f"{'whole images' if trainer.sampler.patch_size is None else f'{trainer.sampler.patch_size}x{trainer.sampler.patch_size} patches'}"
        f"{f' (output {trainer.sampler.patch_size - 2 * trainer.margin})' if trainer.margin else ''}, "
        f"{counted(trainer.sampler.steps_per_epoch(), 'step')}/epoch{_rounds(trainer)}, stop at {' or '.join(s for s in stop if s)}",
        f"engine: {describe_engine(trainer.device, trainer.amp_dtype, config.channels_last)}",
    ] + ([f"{'warning: --patch-size' if patch_given else 'note: the recipe patch size'} {config.patch_size} is larger "
          f"than the largest image: patches of {trainer.sampler.patch_size} are drawn"]
         if config.patch_size and trainer.sampler.patch_size and trainer.sampler.patch_size < config.patch_size else [])


def _add_synthetic_pairs(config: TrainConfig, data: TrainingData, say: Callable[[str], None]) -> None:
    """With --synthetic, generate the pairs that join the training patches (their time counts)."""
    if not config.synthetic:
        return
    from unetkit.train.synthetic_pairs import synthetic_pairs  # diffusion code loads only when asked for

    data.synthetic = synthetic_pairs(Path(config.synthetic), data.train.labels, data.encoding, data.normalization,
                                     config.synthetic_count, config.patch_size or min(data.train.labels[0].shape),
                                     config.seed, str(resolve_device(config.device)), say)


# What a fine-tuned run keeps of the run it starts from: the network must be the same to take its weights.
ARCHITECTURE_FIELDS = ("model", "base_width", "depth", "bilinear", "align_corners", "residual", "single_logit",
                       "normalization")
MULTI_OUTPUT_LOSSES = ("ce", "ce+dice", "weighted-ce")  # softmax over one output per class


# Fields only the padded U-Net reads: the paper's network has 2x2 transposed convolutions and no choice, an FCN
# neither depth nor upsampling choice (five VGG blocks, learned upsampling).
PADDED_UNET_ONLY = ("bilinear", "align_corners", "residual")


def settle_model_fields(config: TrainConfig, fixed: frozenset[str]) -> TrainConfig:
    """Refuse a flag the chosen network would ignore, and record the network as built: run.json said
    `bilinear: true` for the paper's U-Net, which has transposed convolutions only."""
    ignored = [name for name in PADDED_UNET_ONLY if name in fixed and config.model != "unet"]
    if "depth" in fixed and config.model.startswith("fcn"):
        ignored.append("depth")
    if ignored:
        flags = ", ".join(flag_of(name) for name in ignored)
        raise InputError(f"{flags}: --model {config.model} has no such choice (only the padded U-Net, --model unet, has); "
                         f"drop {flags}")
    if config.model == "unet":
        return config
    settled = replace(config, bilinear=False, align_corners=False, residual=False)
    if config.model == "unet-classic":  # its tiles have no spare context to shift outputs by: no label alignment
        return replace(settled, align_outputs=False)
    return replace(settled, depth=None)  # an FCN has five VGG blocks, whatever depth the recipe says


def check_loss_fits_outputs(config: TrainConfig, network_of: str | None = None) -> None:
    """Refuse a loss the network's outputs cannot feed, before any data is read (else the first step fails).
    `network_of`: where the network comes from, when not from config's recipe (--from RUN)."""
    network_of = network_of or f"recipe {config.recipe}"
    if config.loss == "bce" and not config.single_logit:
        seed = "" if network_of.startswith("--from") else " (or --recipe seed for the sigmoid network)"
        raise InputError(f"--loss bce: trains one sigmoid output, but the network of {network_of} has one output per "
                         f"class; use --loss ce or ce+dice{seed}")
    if config.single_logit and config.loss in MULTI_OUTPUT_LOSSES:
        raise InputError(f"--loss {config.loss}: needs one output per class, but the network of {network_of} has one "
                         "sigmoid output; use --loss bce or dice")


def train(
    images: Path,
    labels: Path,
    out: Path,
    config: TrainConfig,
    val_images: Path | None = None,
    val_labels: Path | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
    fixed: frozenset[str] = frozenset(),
    start_from: Path | None = None,
    began: float | None = None,
) -> dict[str, Any]:
    """Train a new run into `out` (which must not hold a run already); returns run.json's record.

    With `config.plan` (the default recipe) the padded U-Net's patch, batch, width, depth, loss
    and learning rate are planned from the data and the machine, except the fields named in `fixed`.
    `start_from` fine-tunes a trained run: its network, weights, classes and normalisation are kept
    (masks with other values, or images with other channels, are refused). `began`: the time.monotonic()
    the budget counts from (the command's start, so that loading torch counts too); default now.
    """
    began = time.monotonic() if began is None else began  # reading, planning and building count against the budget
    out = Path(out)
    refuse_inside_inputs(out, [images, labels, val_images, val_labels])
    check_new_run_folder(out)
    check_model_name(config.model, segmenters_only=True)
    if config.model == "diffusion-unet":
        raise InputError("--model diffusion-unet is a denoiser, not a segmenter; train it with `unetkit diffusion train`")
    base = None
    if start_from is not None:
        clashing = sorted(set(fixed) & set(ARCHITECTURE_FIELDS))
        if clashing:
            flags = ", ".join(flag_of(name) for name in clashing)
            raise InputError(f"--from {start_from}: keeps that run's network; drop {flags} (or train a new run without --from)")
        base = load_run(start_from)  # read for its weights only: the new run computes as it is told
        kept = {name: getattr(base.config, name) for name in ARCHITECTURE_FIELDS}
        if "loss" not in fixed:  # the loss the network's outputs were trained for, unless one is given
            kept["loss"] = base.config.loss
        for name in ("patch_size", "batch_size"):  # the patches it trained on, unless given: the recipe's 128 px
            if name not in fixed:                  # was an unpadded U-Net's input tile, with 4 x 4 outputs
                kept[name] = getattr(base.config, name)
        if "mask_kind" not in fixed and base.config.mask_kind == "instances":  # its masks were object ids: so are these
            kept["mask_kind"] = "instances"
        config = replace(config, plan=False, **kept)
    else:
        config = settle_model_fields(config, fixed)
    check_loss_fits_outputs(config, f"--from {start_from} (recipe {base.config.recipe})" if base else None)
    image_files = list_image_files(Path(images)) + (list_image_files(Path(val_images)) if val_images else [])
    declared = pixel_size_record(image_files)  # each header read once, for the matching and for run.json
    data = prepare_training_data(images, labels, val_images, val_labels, config.val_fraction,
                                 base.normalization if base else config.normalization, base.encoding if base else None,
                                 say=say, in_channels=base.model_options["in_channels"] if base else None,
                                 base_run=start_from, ignore_value=config.ignore_value, mask_kind=config.mask_kind,
                                 pixel_size_m=matched_pixel_size(declared) if config.match_pixel_size else None)
    if config.single_logit and data.encoding.num_classes != 2:
        raise InputError(f"recipe {config.recipe}: one sigmoid output needs exactly 2 classes, the masks have {data.encoding.num_classes}")
    plan = None
    if config.plan and config.model == "unet":
        config, plan = plan_run(config, data, frozenset(fixed), time.monotonic() - began)
    elif base is not None and "patch_size" in fixed:  # else it keeps the base's tile, valid already
        config = _valid_network_patch(config, data, fixed, say)
    elif config.plan:  # the planner's cost model and rules are the padded U-Net's
        config = _valid_network_patch(config, data, fixed, say)
        say(f"no plan: the planner sizes the padded U-Net (--model unet); --model {config.model} trains with fixed "
            f"values (width {config.base_width}, patch {config.patch_size}, batch {config.batch_size}, lr {config.lr:g}) "
            "unless you give them")
        config = replace(config, plan=False)
    _add_synthetic_pairs(config, data, say)
    options = model_options(config, data.in_channels, data.encoding.num_classes)
    record = new_run_record(config, config.model, options)
    if plan is not None:
        record["plan"] = plan
    record["data"] = {
        "images": str(Path(images).resolve()),
        "labels": str(Path(labels).resolve()),
        "val_images": str(Path(val_images).resolve()) if val_images else None,
        "val_labels": str(Path(val_labels).resolve()) if val_labels else None,
        "train": data.train.names,
        "val": data.val.names,
        "digest": {"train": data.train.digest(), "val": data.val.digest()},
    }
    record["classes"] = {**data.encoding.to_json(), "fractions": [  # what predict --instances tells backgrounds by
        round(f, 6) for f in class_fractions([y.numpy() for y in data.train.labels], data.encoding.num_classes)]}
    record["normalization"] = data.normalization.to_json()
    given = None if config.pixel_size is None else parse_length(config.pixel_size, "--pixel-size")
    # predict compares inputs' scales with it, and --match-pixel-size resamples them to it
    record["pixel_size"], notes = training_pixel_size(declared, len(image_files), given,
                                                      base.record.get("pixel_size") if base else None,
                                                      matched=config.match_pixel_size)
    for note in notes:
        say(f"note: {note}")
    trainer = Trainer(out, config, data, record, progress, say)  # checks the rest before anything is written
    if base is not None:
        trainer.start_from(base)
        record["start_from"] = str(Path(start_from).resolve())
    trainer.counters.elapsed_s = time.monotonic() - began
    with claimed_run_folder(out, "train"):
        write_run_json(out, record)
        for line in _describe(trainer, "patch_size" in fixed):
            say(line)
        if plan is not None:
            steps = plan["planned_steps"]
            if config.epochs:  # the sampler's own count of an epoch's steps
                by_epochs = config.epochs * trainer.sampler.steps_per_epoch()
                steps = min(steps, by_epochs) if config.budget_s else by_epochs
            say(f"plan ({counted(steps, 'step')} of about {plan['step_seconds']:.2f} s; "
                f"fixed by you: {', '.join(flag_of(name) for name in plan['fixed_by_user']) or 'nothing'}):")
            for reason in plan["reasons"]:
                say(f"  {reason}")
        trainer.run()
        _report_alignment(trainer.record, say)
        _warn_about_slow_validation(trainer, say, plan)
        if plan is not None and config.budget_s:
            _note_slower_steps(trainer, plan, say)
        _say_if(one_class_warning(trainer.record, trainer.data.val.labels, data.encoding), say)
        say(describe_result(trainer.record, config.budget_s))  # the last line: which weights were kept
    return trainer.record


def _say_if(line: str | None, say: Callable[[str], None]) -> None:
    if line:
        say(line)


SLOWER_THAN_PLANNED = 1.5  # steps this many times slower than planned get a note: the run got far fewer of them


def _note_slower_steps(trainer: Trainer, plan: dict[str, Any], say: Callable[[str], None]) -> None:
    """A budgeted run whose steps were much slower than planned (another program took the cores, or a short
    budget planned from the fastest speed remembered) trained far fewer steps than it promised: say so."""
    planned_s = plan["step_seconds"]
    step_s = trainer.step_seconds / trainer.steps_timed if trainer.steps_timed else 0.0  # the mean, not the last few
    fewer = trainer.counters.step * SLOWER_THAN_PLANNED < (plan.get("planned_steps") or 0)
    if planned_s and step_s > SLOWER_THAN_PLANNED * planned_s and fewer:  # review: "712 of the 317 planned" was said
        timed = str(trainer.config.base_width) in (plan.get("measured_step_seconds") or {})
        why = ("was another program busy? (a model trained on an idle machine may be better)"
               if timed else "its steps were estimated, not timed")
        say(f"note: steps took {step_s:.2f} s, not the {planned_s:.2f} s planned, so the run trained "
            f"{trainer.counters.step} of the {plan['planned_steps']} planned steps; {why}")


def _rounds(trainer: Trainer) -> str:
    """Under a budget with patches, validation (a log.csv row) comes by time, not once per pass over the data."""
    if not trainer.timed_rounds():
        return ""
    return f" (validated about every {trainer.config.budget_s / VALIDATIONS_PER_BUDGET:.0f} s, not every epoch)"


def describe_result(record: dict[str, Any], budget_s: float | None) -> str:
    """One line on what the run did and which weights it kept: what a user reads last, and compares runs by."""
    progress = record.get("progress") or {}
    best = (record.get("metrics") or {}).get("best") or {}
    spent = f"{counted(progress.get('step', 0), 'step')} in {progress.get('seconds', 0.0):.0f} s"
    if budget_s:
        spent += f" of a {budget_s:.0f} s budget"
    if best.get("selected_by") == "train_loss":
        kept = f"kept the weights of the lowest training loss ({best['train_loss']:.4f}, epoch {best['epoch']})"
    elif "val_dice" in best:
        error = f"pixel error {best['val_pixel_error']:.4f}"
        aligned = record.get("alignment") or {}
        if any(aligned.get("shift_px") or ()):  # what the saved run predicts: its outputs are shifted
            error = f"pixel error {aligned['val_pixel_error_shifted']:.4f} with the label alignment ({best['val_pixel_error']:.4f} without)"
        kept = f"kept the weights of step {best['step']} (log.csv row {best['epoch']}): validation Dice {best['val_dice']:.3f}, {error}"
    else:
        kept = "no weights kept yet"
    return f"finished: {spent}; {kept}"


def one_class_warning(record: dict[str, Any], val_labels: list[torch.Tensor], encoding: LabelEncoding) -> str | None:
    """A warning when the kept weights misclassify as many validation pixels as calling every pixel the most
    common class would: a run too short for its data (16 steps on a loaded machine) finished with exit 0 and
    pixel error 0.97, against 0.17 for that, and predict would have used it without a word (audit)."""
    best = (record.get("metrics") or {}).get("best") or {}
    if "val_pixel_error" not in best or not val_labels:
        return None
    # the error describe_result reports (with the label alignment where the run applies it), and the baseline
    # measured as it is: a mean over the validation images of each one's share of other pixels
    error = (record.get("alignment") or {}).get("val_pixel_error_shifted", best["val_pixel_error"])
    per_image = [torch.bincount(y[y != IGNORE_CLASS].flatten().long(), minlength=encoding.num_classes) for y in val_labels]
    per_image = [counts for counts in per_image if int(counts.sum())]
    if not per_image:
        return None
    common = int(sum(per_image).argmax())
    baseline = sum(1.0 - float(counts[common]) / float(counts.sum()) for counts in per_image) / len(per_image)
    if baseline == 0 or error < baseline:  # a validation block of one class: nothing to compare with
        return None
    return (f"warning: the kept weights misclassify {error:.3f} of the validation pixels, no fewer than "
            f"calling every pixel {encoding.describe_values()[common]} would ({baseline:.3f}): this model has not learnt "
            "the task; train longer (a larger --budget, or --resume RUN --budget with a larger total)")


def _warn_about_slow_validation(trainer: Trainer, say: Callable[[str], None], plan: dict[str, Any] | None = None) -> None:
    """A validation set so large that one pass takes more than VALIDATION_SHARE of the budget leaves little time to
    train (a 3000 x 2500 validation image gave a 30 s run 1 step): say so, with what to change. When the steps
    too ran far slower than the plan timed them, another program held the cores: that is said instead (a
    validation of 1 s took 19 s under load, and the advice was to give fewer validation images)."""
    budget, cost = trainer.config.budget_s, trainer.counters.end_cost_s
    if budget and cost > VALIDATION_SHARE * budget:
        pixels = sum(int(y.numel()) for y in trainer.data.val.labels)
        planned_s = (plan or {}).get("step_seconds")
        step_s = trainer.step_seconds / trainer.steps_timed if trainer.steps_timed else 0.0
        busy = bool(planned_s) and step_s > SLOWER_THAN_PLANNED * planned_s
        fix = ("the training steps too took {:.1f} times as long as planned: was another program busy? Train again "
               "on an idle machine".format(step_s / planned_s) if busy else
               "give a larger --budget, or fewer or smaller validation images")
        say(f"warning: one validation of the {counted(len(trainer.data.val), 'validation image')} ({pixels / 1e6:.1f} M pixels) "
            f"takes {cost:.0f} s, over {VALIDATION_SHARE:.0%} of the {budget:.0f} s budget, so the run trained only "
            f"{counted(trainer.counters.step, 'step')}; {fix}")


def _report_alignment(record: dict[str, Any], say: Callable[[str], None]) -> None:
    """One line on the sub-pixel shift the run will apply to its outputs, if it found one (alignment.py)."""
    found = record.get("alignment") or {}
    down, right = found.get("shift_px") or (0.0, 0.0)
    if down or right:
        moves = [f"{abs(amount):.2f} px {names[amount < 0]}" for amount, names in ((down, ("down", "up")),
                                                                            (right, ("right", "left"))) if amount]
        say(f"label alignment: outputs shifted {' and '.join(moves)}, as the validation labels sit "
            f"(pixel error {found['val_pixel_error']:.4f} -> {found['val_pixel_error_shifted']:.4f}; "
            + (f"better in {blocks[0]} blocks of the validation images, worse in {blocks[1]}; "
               if (blocks := found.get("blocks_better_worse")) else "")  # runs saved before the sign test lack it
            + "--no-align turns it off)")


def _budget_spent(budget_s: float, spent: float, run_dir: Path, needed: float = 0.0, loading: float = 0.0) -> str:
    """Why a resumed run's --budget leaves no time to train (it is the run's new total, time spent included).
    `loading`: what this start spent reading the data, part of `spent` (said apart: "trained 7 s" refused 5 s,
    then "trained 10 s" refused 8 s, the 3 s of reading unexplained)."""
    trained = (f"has used {spent:.0f} s ({spent - loading:.0f} s trained, {loading:.0f} s reading the data to resume)"
               if loading >= 0.5 else f"has already trained {spent:.0f} s")
    room = f" and needs {needed:.1f} s for one more step, validation and saving" if needed else ""
    return (f"--budget {budget_s:.0f}s: {run_dir} {trained}{room}, and a resumed run's budget is "
            f"its new total; give more (e.g. --budget {int(spent + needed + 300)}s)")


def has_resume_state(run_dir: Path) -> bool:
    """A run killed before its first epoch ended has run.json but no resume state. `train --out` refuses its
    folder (it is not empty), so resume starts it again from step 0: a new Trainer with the run's config and
    seed is exactly the state the run began in."""
    return (run_dir / RESUME_DIR / RESUME_FILE).is_file()


def _check_same_data(run_dir: Path, paths: dict[str, Any], data: TrainingData) -> None:
    """A resumed run must see the pairs it started with: a pair added, removed or edited would shift the
    validation split or change what the best score means. (Runs from before the digest check names only.)
    A pair added or removed is named as such first: it also moves the split, and the pair it moved says little."""
    def changed(where: str, change: str) -> InputError:
        return InputError(f"{paths['images']}: the data changed since {run_dir} started ({where}: {change}); "
                          f"restore it to resume, or start a new run from these weights with --from {shell_word(run_dir)}")

    before = {*paths.get("train", data.train.names), *paths.get("val", data.val.names)}
    now = {*data.train.names, *data.val.names}
    if before != now:
        def listed(names: list[str], what: str) -> str:
            return f"{', '.join(names[:3])}{f' and {len(names) - 3} more' if len(names) > 3 else ''} {what}"

        added, removed = sorted(now - before), sorted(before - now)
        raise changed("pairs", "; ".join(listed(names, what) for names, what in ((added, "added"), (removed, "removed")) if names))
    for split, pairs in (("train", data.train), ("val", data.val)):
        digest = (paths.get("digest") or {}).get(split)
        if list(paths.get(split, pairs.names)) != pairs.names or (digest is not None and digest != pairs.digest()):
            raise changed(f"{split} split", "pairs edited or reordered")


def resume(
    run_dir: Path,
    epochs: int | None = None,
    budget_s: float | None = None,
    progress: bool = True,
    say: Callable[[str], None] = print,
    device: str | None = None,
    precision: str | None = None,
    began: float | None = None,
) -> dict[str, Any]:
    """Continue a run from its last saved epoch, on the same data; `epochs`/`budget_s` may extend it (the budget
    is the run's new total, time already spent included, and this start's reading from `began` on, as for
    `train`); `device`/`precision` move it (e.g. a GPU run to a CPU). The run folder is held from the start
    (folder_lock): its record must not change between being read and being trained on, and the partial files
    removed at the start may be another command's."""
    began = time.monotonic() if began is None else began
    with folder_lock(Path(run_dir), "wait until it ends: a run is continued by one command at a time"):
        return _resume_held(Path(run_dir), epochs, budget_s, progress, say, device, precision, began)


def _resume_held(run_dir: Path, epochs: int | None, budget_s: float | None, progress: bool, say: Callable[[str], None],
                 device: str | None, precision: str | None, began: float) -> dict[str, Any]:
    """resume(), with the run folder held."""
    record = read_run_json(run_dir)
    config, encoding, normalization = saved_settings(record, run_dir)  # a damaged entry named as run.json's
    saved_config = config
    if epochs is not None or budget_s is not None:  # what the user gives alone decides, as for a new run
        config = replace(config, epochs=epochs, budget_s=budget_s)
    spent = float((record.get("progress") or {}).get("seconds", 0.0))
    done_epochs = int((record.get("progress") or {}).get("epoch", 0))
    if epochs is not None and saved_config.budget_s and saved_config.patch_size is not None and not saved_config.epochs:
        raise InputError(f"--epochs {epochs}: {run_dir} was trained by a budget, and its log counts validation rounds "
                         f"({done_epochs} so far), not epochs; continue it with --budget, its new total (e.g. --resume "
                         f"{run_dir} --budget {int(spent + 300)}s)")
    finished_as_it_was = record.get("status") == "finished" and epochs is None and budget_s is None
    if finished_as_it_was or (epochs is not None and done_epochs >= epochs):  # it would train nothing
        if epochs is not None or (config.epochs and done_epochs >= config.epochs):  # the epochs ended it
            was, more = f"has trained {counted(done_epochs, 'epoch')}", f"--epochs {done_epochs * 2}"
        else:
            was, more = f"has used its {config.budget_s:.0f} s budget", f"--budget {int(spent + 300)}s"
        raise InputError(f"{run_dir}: {was}; to train it longer give a larger total, e.g. --resume {shell_word(run_dir)} {more}")
    if budget_s is not None and budget_s <= spent:
        raise InputError(_budget_spent(budget_s, spent, run_dir))
    saved_once = record.get("status") == "finished" or done_epochs >= 2  # a state was saved after its first round
    if not has_resume_state(run_dir) and saved_once and (run_dir / WEIGHTS_FILE).is_file():  # would overwrite them
        raise InputError(f"{run_dir}: its resume state ({RESUME_DIR}/) is missing, so it cannot continue where it "
                         f"stopped; start a new run from its weights: unetkit train ... --from {shell_word(run_dir)} --out NEW_RUN")
    check_writable_folder(run_dir)  # before reading the data and training, not at the first save
    config = config.with_overrides(device=device, precision=precision)
    record["config"] = config.to_json()
    paths = record["data"]  # the classes and the normalisation are the run's, not re-derived
    for key in ("images", "labels", "val_images", "val_labels"):
        if paths.get(key) and not Path(paths[key]).exists():
            raise InputError(f"{paths[key]}: the {key.replace('_', ' ')} this run trained on (run.json data.{key}) are "
                             f"not there any more; put them back to resume, or fine-tune from the run where they are now "
                             f"(--from {shell_word(run_dir)})")
    data = prepare_training_data(
        Path(paths["images"]), Path(paths["labels"]),
        Path(paths["val_images"]) if paths["val_images"] else None,
        Path(paths["val_labels"]) if paths["val_labels"] else None,
        config.val_fraction, normalization, encoding, say=say,
        in_channels=record["model"]["options"].get("in_channels"), resuming=True,  # grey GIFs read as grey, as at the start
        mask_kind=INSTANCES if config.mask_kind == INSTANCES else "classes",  # its masks passed when it started
        pixel_size_m=(record["pixel_size"]["width_m"], record["pixel_size"]["height_m"])  # resampled as at the start
        if config.match_pixel_size and record.get("pixel_size") else None,
    )
    _check_same_data(run_dir, paths, data)
    _add_synthetic_pairs(config, data, say)  # the same seed draws the same pairs again
    trainer = Trainer(run_dir, config, data, record, progress, say)
    remove_partial_writes(run_dir)
    if has_resume_state(run_dir):
        trainer.restore()
        loading = time.monotonic() - began
        trainer.counters.elapsed_s += loading
        needed = trainer.counters.step_cost_s + trainer.counters.end_cost_s  # a step, a validation and saving, as measured
        moved = (device, precision) != (None, None) and (trainer.config.device, trainer.config.precision) != (
            saved_config.device, saved_config.precision)  # costs measured on another device say little here
        used = max(spent, trainer.counters.elapsed_s)  # the time saved, and this start's loading on top
        if budget_s is not None and not moved and budget_s - used < needed:
            raise InputError(_budget_spent(budget_s, used, run_dir, needed, used - spent if used > spent else 0.0))
        unit = "validation round" if trainer.timed_rounds() else "epoch"  # log.csv's "epoch" column counts these
        say(f"resuming {run_dir} after {unit} {trainer.counters.epoch}, step {trainer.counters.step}")
    else:
        say(f"{run_dir} stopped before it saved its first epoch; training it again from the start")
        trainer.counters.elapsed_s = time.monotonic() - began  # this start's loading counts, as for a new run
        if record.get("start_from"):  # a fine-tuned run starts from its base's weights, as it did the first time
            trainer.start_from(load_run(Path(record["start_from"])))
    trainer.record["status"] = "training"
    trainer.record.pop("error", None)  # that of an earlier stop (a full disk) no longer holds
    trainer.run()
    _report_alignment(trainer.record, say)
    _warn_about_slow_validation(trainer, say)
    _say_if(one_class_warning(trainer.record, trainer.data.val.labels, encoding), say)
    say(describe_result(trainer.record, config.budget_s))
    return trainer.record
