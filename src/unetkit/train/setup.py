"""From paths to tensors: read, pair, split, fit the label encoding and the normalisation."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from unetkit.data.calibration import readable_length
from unetkit.rescale import at_pixel_size
from unetkit.data.io import list_image_files, refuse_predictions_folder
from unetkit.data.dataset import (PaletteCheck, RawPair, TensorPairs, pairs_as_objects_and_borders, read_pairs,
                                  split_contiguous)
from unetkit.data.validate import ENCODING, INSTANCES, SMOOTHED, CheckReport, check_dataset, held_out_findings, inspect_pairs
from unetkit.data.labels import LabelEncoding
from unetkit.data.normalize import Normalization, pixel_samples
from unetkit.data.zarr_pages import ZarrPages, is_zarr
from unetkit.errors import InputError
from unetkit.text import counted, shell_word

FEW_TRAINING_PAIRS = 2  # a split that leaves this few to train on is said, with the way to train on all


@dataclass
class TrainingData:
    train: TensorPairs
    val: TensorPairs
    encoding: LabelEncoding
    normalization: Normalization
    in_channels: int
    synthetic: TensorPairs | None = None  # generated pairs mixed into the training patches (train/synthetic_pairs.py)


def _stop_on_errors(report: CheckReport, images: Path, labels: Path, say: Callable[[str], None],
                    base_run: Path | None = None, checkable: bool = True, ignore_value: int | None = None) -> None:
    """Say the warnings; raise the first error, counting the others (`unetkit check` lists them all). `checkable`:
    `unetkit check` on these folders alone finds the same errors; a validation set checked against the training
    masks' classes is not, so its other files are named instead."""
    for warning in report.warnings:
        say(warning.line())
    if report.errors:
        first, others = report.errors[0], report.errors[1:]
        names = ", ".join(Path(error.file).name for error in others[:3]) + (", ..." if len(others) > 3 else "")
        command = _check_command(images, labels, base_run, ignore_value)
        more = f" ({len(others)} more: " + (f"`{command}` lists them)" if checkable else f"{names})") if others else ""
        raise InputError(f"{first.file}: {first.message}{more}")


def _check_command(images: Path, labels: Path, base_run: Path | None, ignore_value: int | None) -> str:
    """The `unetkit check` that lists every problem of these pairs at once."""
    return (f"unetkit check --images {shell_word(images)} --labels {shell_word(labels)}"
            + (f" --run {shell_word(base_run)}" if base_run else "")
            + (f" --ignore-value {ignore_value}" if ignore_value is not None else ""))


def _read_counting_the_others(images: Path, labels: Path, palettes: PaletteCheck, encoding: LabelEncoding | None,
                              in_channels: int | None, base_run: Path | None, ignore_value: int | None
                              ) -> tuple[list[RawPair], list[int] | None]:
    """read_pairs, whose first unreadable pair (a size mismatch, a JPEG mask) stops it; the error then counts
    the problems after it, as those of the masks' values do, so that three bad pairs are not found one run at a
    time. Counting reads every pair again, as `unetkit check` does: only when one has failed."""
    try:
        return read_pairs(images, labels, palettes=palettes, channels=in_channels)
    except InputError as first:
        try:
            report = check_dataset(images, labels, encoding, in_channels, ignore_value=ignore_value)
        except InputError:  # what stopped the reading stops the check too (no such folder): said as it was
            raise first from None
        others = sum(1 for error in report.errors if not _is_the_error(str(error.file), str(first)))
        if others < 1:
            raise
        raise InputError(f"{first} ({others} more: `{_check_command(images, labels, base_run, ignore_value)}` "
                         "lists them)") from None


def _is_the_error(file: str, first: str) -> bool:
    """Whether a check's error about `file` is the one the reading stopped at, `first`: that error names the
    file ("a.png: ...") or its folder and the file's name ("image: no mask for orphan.png"). The second kind was
    counted again as one more problem (audit)."""
    stopped_at = first.partition(": ")[0]
    named = re.search(rf"(?<![\w.-]){re.escape(Path(file).name)}(?![\w.-])", first)  # 1.png is not in 11.png
    return file == stopped_at or (Path(file).parent == Path(stopped_at) and named is not None)


def _warn_about_shared_images(train_pairs: list[RawPair], val_pairs: list[RawPair], say: Callable[[str], None]) -> None:
    """A validation image whose pixels are a training image's (a copy: the same file is refused, see
    _refuse_training_images_as_validation) makes the validation scores (and the weights kept by them) flatter
    the model: say so, naming the first."""
    def key(pair: RawPair) -> tuple[tuple[int, ...], str, bytes]:
        array = np.ascontiguousarray(pair.image.array)
        return array.shape, array.dtype.name, hashlib.sha256(array.tobytes()).digest()

    trained = {key(pair): pair for pair in train_pairs}
    shared = [(pair, trained[key(pair)]) for pair in val_pairs if key(pair) in trained]
    if shared:
        pair, twin = shared[0]
        say(f"warning: {pair.image.location}: also a training image ({twin.image.location}); {len(shared)} of "
            f"{len(val_pairs)} validation images are, so validation will flatter the model")


def _data_read(file: Path) -> Path:
    """Where the pixels of an input are: the file itself, or the array a zarr image reads (img.zarr and
    img.zarr/0 are one array), by its real path."""
    if is_zarr(file):
        try:
            return ZarrPages.open(file).array_path.resolve()
        except InputError:
            pass
    return file.resolve()


def _refuse_training_images_as_validation(images: Path, val_images: Path) -> None:
    """Weights chosen on images the network trained on look better than they are, and nothing says so: a
    validation image that is also a training image (the same file, by any path) is refused."""
    training = {_data_read(file) for file in list_image_files(images)}
    shared = [file for file in list_image_files(val_images) if _data_read(file) in training]
    if shared:
        more = f" (and {len(shared) - 1} more)" if len(shared) > 1 else ""
        raise InputError(f"--val-images {val_images}: {shared[0].name}{more} is also a training image in {images}; "
                         "validation must be held out, or the kept weights are chosen on what they learnt: give images "
                         "the network does not train on, or leave --val-images and --val-labels out to hold out a "
                         "contiguous block (--val-fraction)")


FEW_HELD_OUT_PIXELS = 0.05  # a held-out block with under this share of the pixels chooses the weights on little


def _say_if_little_is_held_out(train_pairs: list[RawPair], val_pairs: list[RawPair], say: Callable[[str], None]) -> None:
    """The held-out block is the last images by name, whatever their size: a 96 x 96 crop last among large images
    was all the validation (0.3 % of the pixels, two objects), and the kept weights were chosen on it unsaid."""
    held = sum(p.label.array.shape[0] * p.label.array.shape[1] for p in val_pairs)
    total = held + sum(p.label.array.shape[0] * p.label.array.shape[1] for p in train_pairs)
    if total and held < FEW_HELD_OUT_PIXELS * total:
        say(f"note: the {counted(len(val_pairs), 'pair')} held out for validation ({', '.join(p.label.name for p in val_pairs[:3])}"
            f"{', ...' if len(val_pairs) > 3 else ''}) hold {100 * held / total:.1f} % of the pixels, so the "
            "weights kept are chosen on little; give a larger --val-fraction, or a representative set as "
            "--val-images/--val-labels")


def prepare_training_data(
    images: Path,
    labels: Path,
    val_images: Path | None,
    val_labels: Path | None,
    val_fraction: float,
    normalization: str | Normalization,
    encoding: LabelEncoding | None = None,
    say: Callable[[str], None] = print,
    in_channels: int | None = None,
    base_run: Path | None = None,
    ignore_value: int | None = None,
    resuming: bool = False,
    mask_kind: str = "classes",
    pixel_size_m: tuple[float, float] | None = None,
) -> TrainingData:
    """Read and check everything once (the checks of `unetkit check`: warnings are said, an error stops).
    `resuming`: the data of a run being continued, whose split can no longer change (no note about it).
    `mask_kind` (TrainConfig.mask_kind): "instances" turns object ids into objects and separating borders;
    "auto" refuses masks that look like instance ids, "classes" only warns. `pixel_size_m` (train
    --match-pixel-size): pairs whose images declare another pixel size are resampled to this one (rescale.py).

    The classes come from the training masks and the normalisation is fitted on
    the training images, unless a resumed run passes its own. `ignore_value`: the masks' value of unlabelled
    pixels (class IGNORE_CLASS in the class maps), also with a given encoding (fine-tuning on sparse labels).
    """
    if encoding is not None and ignore_value is not None and ignore_value != encoding.ignore_value:
        run = base_run or "the run"  # fine-tuning: the run's classes are fixed, and so is what is unlabelled
        if ignore_value in encoding.values:
            raise InputError(f"--ignore-value {ignore_value}: is one of {run}'s classes {encoding.describe_values()}; "
                             "a class cannot become unlabelled pixels when fine-tuning; give another value")
        if encoding.ignore_value is not None:
            raise InputError(f"--ignore-value {ignore_value}: {run} marks unlabelled pixels with "
                             f"{encoding.ignore_value}; paint them so, or drop --ignore-value")
        encoding = replace(encoding, ignore_value=ignore_value)
    ignore_value = encoding.ignore_value if encoding is not None else ignore_value
    if (val_images is None) != (val_labels is None):
        raise InputError("give both --val-images and --val-labels, or neither (then a contiguous block is held out)")
    for path, option in ((images, "--images"), (labels, "--labels"), (val_images, "--val-images"), (val_labels, "--val-labels")):
        if path is not None:
            refuse_predictions_folder(path, option)
    if val_images is not None:
        _refuse_training_images_as_validation(images, val_images)
    # one palette check over training and validation masks (and the run fine-tuned from): an index is one class
    if encoding is not None and encoding.palette and base_run is not None:
        palettes = PaletteCheck.of_run(encoding.palette, encoding.values, base_run)
    else:
        palettes = PaletteCheck()
    pairs, palette = _read_counting_the_others(images, labels, palettes, encoding, in_channels, base_run, ignore_value)
    if mask_kind == INSTANCES:
        pairs, palette = pairs_as_objects_and_borders(pairs), None
    inspected = inspect_pairs(pairs, encoding, in_channels, ignore_value=ignore_value)
    if mask_kind == "auto":  # a model of arbitrary ids, 40 edge values or two encodings looks trained and is useless: ask
        inspected = replace(inspected, findings=[replace(f, severity="error") if f.kind in (INSTANCES, SMOOTHED, ENCODING) else f
                                                 for f in inspected.findings])
    _stop_on_errors(inspected, images, labels, say, base_run, ignore_value=ignore_value)
    if val_images is not None:
        train_pairs, (val_pairs, _) = pairs, read_pairs(val_images, val_labels, palettes=palettes,
                                                        channels=in_channels or pairs[0].image.channels)
        if mask_kind == INSTANCES:
            val_pairs = pairs_as_objects_and_borders(val_pairs)
    else:
        train_pairs, val_pairs = split_contiguous(pairs, val_fraction)
        if len(train_pairs) <= FEW_TRAINING_PAIRS and not resuming:
            say(f"note: {counted(len(val_pairs), 'pair')} of {len(pairs)} held out for validation leaves "
                f"{counted(len(train_pairs), 'pair')} to train on; to train on {'both' if len(pairs) == 2 else f'all {len(pairs)}'}, label one more image and "
                "give it as --val-images/--val-labels")
        elif not resuming:
            _say_if_little_is_held_out(train_pairs, val_pairs, say)
        if encoding is None:  # the same split of the summaries: their values are known already
            held_out = held_out_findings(*split_contiguous(inspected.pairs, val_fraction), inspected.colour)
            _stop_on_errors(CheckReport(findings=held_out), images, labels, say, base_run, ignore_value=ignore_value)
    if encoding is None:
        encoding = LabelEncoding.from_masks([(p.label.name, p.label.array) for p in train_pairs], palette,
                                            ignore_value=ignore_value)
    if val_images is not None:  # checked against the training classes and channels (one class alone is fine here)
        report = inspect_pairs(val_pairs, encoding, in_channels or train_pairs[0].image.channels,
                               reference="the run's" if in_channels else "the training images'", ignore_value=ignore_value)
        _stop_on_errors(report, val_images, val_labels, say, base_run, checkable=base_run is not None)
    if val_images is not None:
        _warn_about_shared_images(train_pairs, val_pairs, say)
    if pixel_size_m is not None:  # after the checks, which name the files as they are
        train_pairs, changed = at_pixel_size(train_pairs, pixel_size_m)
        val_pairs, val_changed = at_pixel_size(val_pairs, pixel_size_m)
        if not resuming:
            say(f"{counted(len(changed | val_changed), 'image file')} resampled to {readable_length(pixel_size_m[0])} "
                "pixels (--match-pixel-size)")
    norm = normalization
    if not isinstance(norm, Normalization):
        norm = Normalization.fit([p.image.array for p in train_pairs], normalization)
    elif not resuming:  # fine-tuning on new images: they are like the run's training images from now on
        norm = norm.with_levels_of(pixel_samples([p.image.array for p in train_pairs]), widen=True)
    return TrainingData(
        TensorPairs.build(train_pairs, encoding, norm),
        TensorPairs.build(val_pairs, encoding, norm),
        encoding,
        norm,
        train_pairs[0].image.channels,
    )
