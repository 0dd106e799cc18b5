"""The run directory: what a training run leaves behind, and how a run is loaded back.

    RUN/run.json            config, model, classes and their label values, normalisation,
                            data, library versions, status and metrics
    RUN/model.safetensors   the best weights (by validation, or the recipe's rule)
    RUN/last/               resume state (train/checkpoint.py)
    RUN/log.csv, curves.png one row per epoch, and its plot
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import platform
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Iterator

import torch

from unetkit.config import TrainConfig
from unetkit.data.io import make_writable_folder, missing_folders, remove_empty_folders, write_atomic
from unetkit.data.labels import LabelEncoding
from unetkit.data.normalize import Normalization
from unetkit.data.zarr_pages import is_zarr
from unetkit.devices import same_device
from unetkit.engine import autocast_dtype, inference_precision, to_memory_format
from unetkit.errors import InputError
from unetkit.folder_lock import folder_lock
from unetkit.models.registry import build_model
from unetkit.text import shell_word
from unetkit.train.checkpoint import WEIGHTS_FILE, load_weights

RUN_FILE = "run.json"
RUN_FORMAT_VERSION = 1
_LIBRARIES = ("unetkit", "torch", "numpy", "scipy", "scikit-image", "pillow", "tifffile", "safetensors")


def library_versions() -> dict[str, str]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine_description() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def model_options(config: TrainConfig, in_channels: int, num_classes: int) -> dict[str, Any]:
    """The builder options of the run's network, from the training config and the data."""
    options: dict[str, Any] = {
        "in_channels": in_channels,
        "num_classes": 1 if config.single_logit else num_classes,
        "base_width": config.base_width,
    }
    if config.model.startswith("unet"):  # an FCN's depth is fixed (five VGG blocks)
        options["depth"] = config.depth
    if config.model == "unet":  # the classic network has only transposed convolutions
        options["bilinear"] = config.bilinear
        options["align_corners"] = config.align_corners
        if config.residual:  # only then: runs without it stay readable by versions that never had it
            options["residual"] = True
    return options


def check_new_run_folder(out: Path, resumable: bool = True, what: str = "run folder") -> None:
    """A run goes into a new or empty folder: never over another run or a file. `resumable`: the message
    may offer `--resume` (segmentation runs; diffusion training has no resume). `what` the folder is, for messages."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; choose a new folder for --out")
    if out.exists() and any(out.iterdir()):
        hint = f", or continue it with --resume {shell_word(out)}" if resumable and (out / RUN_FILE).is_file() else ""
        raise InputError(f"{out}: exists and is not empty; choose a new --out{hint}")
    check_writable_folder(out, what)


def refuse_inside_inputs(out: Path, inputs: list[Path | str | None], flag: str = "--out") -> None:
    """Outputs never go among the user's images and masks: a run, samples or an export inside an input folder
    (they were written there without a word) is refused, naming the folder."""
    target = Path(out).resolve()
    for folder in inputs:
        if folder is not None and Path(folder).is_dir() and target.is_relative_to(Path(folder).resolve()):
            raise InputError(f"{flag} {out}: is inside the input folder {folder}; unetkit writes nothing among your "
                             "images and masks, choose a folder outside it")


def refuse_output_among_inputs(out: Path, inputs: list[Path], what: str) -> None:
    """An --out for `what` (predictions, samples) that is an input folder (one given, or the folder of a file
    given), lies inside a folder given, or is a file, is refused before any work."""
    out = Path(out)
    folders = {folder.resolve() for p in map(Path, inputs) if p.exists()  # a zarr image is a folder and a file
               for folder in ((p, p.parent) if is_zarr(p) else (p,) if p.is_dir() else (p.parent,))}
    if out.resolve() in folders:
        raise InputError(f"--out {out}: is an input folder; {what} never go beside the inputs, choose another --out")
    refuse_inside_inputs(out, [p for p in inputs if Path(p).is_dir()])
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file, not a folder; give a new or empty folder for the {what}")


def check_writable_folder(out: Path, what: str = "run folder") -> None:
    """Find out now, not after reading the data or exporting, whether the folder can be made and written."""
    created = missing_folders(out)
    try:
        make_writable_folder(out)
    except OSError as exc:
        raise InputError(f"{out}: cannot create or write the {what} ({exc.strerror}); choose a writable --out") from None
    finally:
        remove_empty_folders(created)  # leave no trace until the run really starts


@contextlib.contextmanager
def claimed_run_folder(out: Path, command: str) -> Iterator[None]:
    """Create the new run folder and hold it for this process (folder_lock) while the run writes into it. It
    was checked empty before the data was read; another process may have begun a run there since."""
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the run folder ({exc.strerror}); choose a writable --out") from None
    with folder_lock(out, "choose a new --out"):
        if any(Path(out).iterdir()):
            raise InputError(f"{out}: another process wrote into it after this {command} checked it was empty; "
                             "choose a new --out")
        yield


def write_run_json(run_dir: Path, record: dict[str, Any]) -> None:
    text = json.dumps(record, indent=2, default=str)
    write_atomic(Path(run_dir) / RUN_FILE, lambda tmp: Path(tmp).write_text(text + "\n"))


def record_failure(run_dir: Path, record: dict[str, Any], exc: Exception) -> None:
    """run.json says the run stopped on an error, and which, instead of "training" for ever; written if the disk
    still takes that much (after a full disk it may not)."""
    record["status"] = "failed"
    record["error"] = (str(exc).splitlines() or [type(exc).__name__])[0]
    try:
        write_run_json(run_dir, record)
    except (InputError, OSError):
        pass


def read_run_json(run_dir: Path, writer: str = "unetkit train") -> dict[str, Any]:
    """A run's record; `writer`: the command whose --out folder is expected, for the message when it is not one."""
    path = Path(run_dir) / RUN_FILE
    if Path(run_dir).is_file():
        inside = " (the run is the folder holding it)" if Path(run_dir).name == RUN_FILE else ""
        raise InputError(f"{run_dir}: is a file{inside}; give the run folder that `{writer} --out` wrote, e.g. "
                         f"{Path(run_dir).parent}")
    if not path.is_file():
        raise InputError(f"{run_dir}: not a unetkit run (no {RUN_FILE}); give the folder that `{writer} --out` wrote")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: unreadable ({exc}); restore it or train again") from None
    _check_record_shape(record, path)
    if record.get("format_version", 0) > RUN_FORMAT_VERSION:
        raise InputError(f"{path}: written by a newer unetkit (format {record['format_version']}); upgrade unetkit")
    return record


RECORD_SECTIONS = ("config", "classes", "normalization", "model", "alignment", "progress", "plan", "data")


def _check_record_shape(record: Any, path: Path) -> None:
    """A hand-edited or damaged run.json is one line naming the entry, not an AttributeError where it is read."""
    def damaged(what: str) -> InputError:
        return InputError(f"{path}: {what}; the run folder is damaged (restore run.json or train again)")

    if not isinstance(record, dict):
        raise damaged("not a record (a JSON object)")
    version = record.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise damaged(f"format_version {version!r} is not a whole number")
    for section in RECORD_SECTIONS:
        if section in record and record[section] is not None and not isinstance(record[section], dict):
            raise damaged(f"entry {section!r} is not a record")
    model = record.get("model") or {}
    if "options" in model and not isinstance(model["options"], dict):
        raise damaged("entry model.options is not a record")
    problem = _alignment_problem(record.get("alignment"))
    if problem:
        raise damaged(problem)


def _alignment_problem(alignment: Any) -> str | None:
    """What is wrong with an alignment entry (run.json's, or the weights header's), or None."""
    if alignment is None:
        return None
    if not isinstance(alignment, dict):
        return "entry 'alignment' is not a record"
    shift = alignment.get("shift_px")
    if shift is not None and not (isinstance(shift, list) and len(shift) == 2
                                  and all(isinstance(v, (int, float)) and math.isfinite(v) for v in shift)):
        return f"alignment.shift_px {shift!r} is not two numbers"
    return None


@dataclass
class Run:
    """A trained run, ready to predict: the network with its best weights, and how to encode data for it."""

    path: Path
    record: dict[str, Any]
    config: TrainConfig
    encoding: LabelEncoding
    normalization: Normalization
    model: torch.nn.Module
    amp_dtype: torch.dtype | None = None  # what the network computes in (engine.autocast_dtype)

    def __repr__(self) -> str:
        """A line a notebook can show: the dataclass's own repr printed the whole record and network (7000 chars)."""
        options = self.record["model"]
        return (f"Run({str(self.path)!r}, model={options.get('name')!r}, in_channels={options['options'].get('in_channels')}, "
                f"classes={self.record.get('classes', {}).get('readable')}, status={self.record.get('status')!r}, "
                f"device={self.device})")

    @property
    def model_options(self) -> dict[str, Any]:
        """The options the network was built with (in_channels, num_classes, ...)."""
        return dict(self.record["model"]["options"])

    @property
    def device(self) -> torch.device:
        """Where the network's weights are."""
        return next(self.model.parameters()).device

    def computing_on(self, device: torch.device, precision: str | None) -> "Run":
        """This run computing on `device` in `precision` (None: as it trained): a Run loaded earlier, given to
        predict with its own device or precision, must honour them, and the caller's Run is left as it was."""
        model = self.model
        if not same_device(device, self.device):
            model = to_memory_format(copy.deepcopy(model).to(device), self.config.channels_last).eval()
        amp_dtype = autocast_dtype(device, precision or inference_precision(device, self.config.precision))
        return replace(self, model=model, amp_dtype=amp_dtype)

    @property
    def output_shift(self) -> tuple[float, float] | None:
        """The sub-pixel shift training measured for the labels' convention (alignment.py); None when there is none."""
        shift = self.record.get("alignment", {}).get("shift_px")
        if not shift or not any(shift):
            return None
        return float(shift[0]), float(shift[1])


@contextlib.contextmanager
def damage_named(run_dir: Path) -> Iterator[None]:
    """Errors reading run.json's entries as one line naming the file: a field the checks refuse names its flag
    (--patch-size 0), which the user of a hand-edited run never gave."""
    try:
        yield
    except InputError as exc:
        raise InputError(f"{Path(run_dir) / RUN_FILE}: {exc}; the run folder is damaged") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{Path(run_dir) / RUN_FILE}: missing or malformed entry ({exc}); the run folder is damaged") from None


def saved_settings(record: dict[str, Any], run_dir: Path) -> tuple[TrainConfig, LabelEncoding, Normalization]:
    """The run's config, classes and normalisation, read from its record (damage_named)."""
    with damage_named(run_dir):
        return (TrainConfig.from_json(record["config"]), LabelEncoding.from_json(record["classes"]),
                Normalization.from_json(record["normalization"]))


def load_run(run_dir: Path, device: str | torch.device = "cpu", precision: str | None = None) -> Run:
    """Rebuild the network from run.json and load model.safetensors into it (no pickle anywhere).

    It computes as it trained (the run's precision and memory layout) unless `precision` says otherwise;
    a precision this device lacks (a GPU run's fp16 on a CPU) becomes auto (engine.inference_precision).
    """
    run_dir = Path(run_dir)
    record = read_run_json(run_dir)
    if record.get("kind") == "diffusion":
        raise InputError(f"{run_dir}: is a diffusion run; draw images with `unetkit diffusion sample {shell_word(run_dir)}`")
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise InputError(f"{run_dir}: has no {WEIGHTS_FILE} yet; let training finish one epoch or use --resume")
    config, encoding, normalization = saved_settings(record, run_dir)
    with damage_named(run_dir):
        options = record["model"]["options"]
        model = build_model(record["model"]["name"], **options)
    outputs = 1 if config.single_logit else encoding.num_classes
    if options.get("num_classes", outputs) != outputs:
        raise InputError(f"{run_dir / RUN_FILE}: lists {encoding.num_classes} classes ({encoding.describe_values()}) but "
                         f"the network has {options['num_classes']} outputs; the run folder is damaged")
    saved_with = load_weights(weights, model)
    saved_classes = saved_with.get("classes") if isinstance(saved_with, dict) else None
    saved_encoding = _encoding_of(saved_classes) if saved_classes is not None else None  # weights of before 2026-12-04 have none
    if saved_encoding is not None and saved_encoding != encoding:
        raise InputError(f"{run_dir / RUN_FILE}: its classes ({encoding.describe_values()}) are not those {WEIGHTS_FILE} "
                         "was trained for; the run folder is damaged (restore run.json or train again)")
    if isinstance(saved_with, dict) and "alignment" in saved_with:  # the shift measured for these very weights
        if _alignment_problem(saved_with["alignment"]):
            raise InputError(f"{weights}: its header's alignment entry is damaged; restore the file or train again")
        record = {**record, "alignment": saved_with["alignment"]}
    device = torch.device(device)
    model = to_memory_format(model.to(device), config.channels_last).eval()
    amp_dtype = autocast_dtype(device, precision or inference_precision(device, config.precision))
    return Run(run_dir, record, config, encoding, normalization, model, amp_dtype)


def _encoding_of(classes: Any) -> LabelEncoding | None:
    """The classes a weights file was saved for, or None when its header's entry cannot be read as such."""
    try:
        return LabelEncoding.from_json(classes)
    except (InputError, KeyError, TypeError):
        return None


def new_run_record(config: TrainConfig, model_name: str, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "format_version": RUN_FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": "training",
        "config": config.to_json(),
        "model": {"name": model_name, "options": options},
        "libraries": library_versions(),
        "machine": machine_description(),
    }
