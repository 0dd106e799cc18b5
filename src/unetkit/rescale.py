"""Predicting images of another pixel size than the training images' (predict --match-pixel-size).

A network learns objects at the scale it was shown: trained on 4 nm EM sections, it segments an 8 nm
section's membranes, half as wide in pixels, badly, and a nucleus twice as many pixels across as any it saw
comes out as several. Matched, each input is resampled to the training pixel size, predicted there, and its
class probabilities resampled back, so the mask lies on the input's own pixel grid (and declares its
calibration). The sizes come from the files (data/calibration.py) and run.json's `pixel_size`; --pixel-size
states the inputs' size where files declare none (PNG exports) or declare it wrongly, and --training-pixel-size
the training images' where theirs declared none. train --match-pixel-size uses the same resampling (at_pixel_size)
to bring training images of mixed scales to one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from skimage.transform import resize

from unetkit.data.calibration import (Calibration, calibration_of, length_unit, parse_length, readable_length,
                                      same_scale)
from unetkit.data.dataset import RawPair
from unetkit.engine import available_memory_bytes
from unetkit.errors import InputError

# Pixel sizes within this factor are predicted as they are: resampling for a 1 % difference blurs more than it fixes.
MATCH_TOLERANCE = 1.02
# Factors beyond this are a wrong size, not a scale to match: a typo (8pm for 8nm sent a 256 px image through the
# network as one pixel, a constant mask) or a file's 72 dpi placeholder (353 um pixels).
MAX_RESAMPLING = 10.0
RESAMPLING_MEMORY_SHARE = 0.5  # of the free memory, for a page resampled and its probability maps both ways
# Bytes per value of the page's channels and class maps, at the network's size and the input's: float32, with
# resize's float64 smoothing and the windows' work (measured: a 24 Mpx, 2-class page resampled from 6 Mpx peaked at 3 GB).
BYTES_PER_VALUE = 32


@dataclass(frozen=True)
class PixelSizes:
    """What predict knows of pixel sizes: the training images' (width, height in metres, or None), the inputs'
    size given by --pixel-size (None: each file's own declaration), and whether inputs are resampled to match."""

    training_m: tuple[float, float] | None
    given_m: float | None = None
    match: bool = False

    @classmethod
    def for_run(cls, record: dict[str, Any] | None, match: bool = False, given: str | None = None,
                training: str | None = None) -> PixelSizes:
        """From run.json's `pixel_size`, --match-pixel-size, --pixel-size (`given`, the inputs') and
        --training-pixel-size (for a run whose training images declared none, or to correct a size given to train;
        one that contradicts what the images declared is refused). Matching with no training size is refused."""
        if not isinstance(match, bool):
            raise InputError(f"match_pixel_size={match!r}: give True or False (the training images' size, where run.json "
                             "has none, as training_pixel_size='4nm')")
        given_m = None if given is None else parse_length(given, "--pixel-size")
        training_m = None if not record else (float(record["width_m"]), float(record["height_m"]))
        if training is not None:
            size = parse_length(training, "--training-pixel-size")
            declared = bool(record) and not record.get("given")
            if declared and training_m is not None and not same_scale(size, training_m[0], MATCH_TOLERANCE):
                raise InputError(f"--training-pixel-size {training}: this run's training images declared "
                                 f"{readable_length(training_m[0])} pixels (run.json); leave it out to match those, or "
                                 "give the inputs' own size with --pixel-size")
            training_m = training_m if declared else (size, size)
        if match and training_m is None:
            raise InputError("--match-pixel-size: this run's training images declared no pixel size, so there is none to "
                             "match; give the size they had, e.g. --training-pixel-size 4nm")
        return cls(training_m, given_m, match)

    def of(self, file: Path) -> tuple[float, float] | None:
        """An input's pixel width and height in metres: --pixel-size, else what the file declares, else None."""
        if self.given_m is not None:
            return self.given_m, self.given_m
        calibration = calibration_of(file)
        return None if calibration is None else calibration.in_metres()

    def calibration(self, file: Path) -> Calibration | None:
        """What an input's outputs declare: its own calibration, or with --pixel-size that size (in the unit
        people write it in), keeping the file's stack spacing."""
        declared = calibration_of(file)
        if self.given_m is None:
            return declared
        unit, size = length_unit(self.given_m)
        spacing = None
        if declared is not None and declared.z_spacing is not None and declared.metres_per_unit():
            spacing = declared.z_spacing * declared.metres_per_unit() / size
        return Calibration(self.given_m / size, self.given_m / size, unit, spacing)

    def scale_of(self, file: Path) -> tuple[float, float] | None:
        """The factors (rows, columns) to resample an input by so that its pixels have the training size, or None
        when it is predicted as it is (not matching, a size unknown, or within MATCH_TOLERANCE)."""
        return self.scale_for(str(file), self.of(file) if self.match else None)

    def scale_for(self, name: str, mine: tuple[float, float] | None) -> tuple[float, float] | None:
        """scale_of for an input called `name` of pixel width and height `mine` in metres (None: unknown); one
        InputError line for factors beyond MAX_RESAMPLING."""
        if not self.match or mine is None or self.training_m is None:
            return None
        factors = (mine[1] / self.training_m[1], mine[0] / self.training_m[0])
        if all(same_scale(factor, 1.0, MATCH_TOLERANCE) for factor in factors):
            return None
        if not all(same_scale(factor, 1.0, MAX_RESAMPLING) for factor in factors):
            ratio = max(factors, key=lambda factor: abs(math.log(factor)))
            how = f"{ratio:.3g}x larger" if ratio > 1 else f"{1 / ratio:.3g}x smaller"
            raise InputError(f"{name}: its pixels ({readable_length(mine[0])}) are {how} than the training images' "
                             f"({readable_length(self.training_m[0])}); --match-pixel-size resamples by at most "
                             f"{MAX_RESAMPLING:g}x, so one of the two sizes is likely wrong (a typo, or a placeholder "
                             "such as 72 dpi): give the inputs' true size with --pixel-size")
        return factors

    def warning(self, file: Path) -> str | None:
        """A line about an input whose mask may be wrong for its scale: matching, one that declares no pixel size
        (predicted as it is); not matching, one whose pixels differ over PIXEL_SIZE_TOLERANCE from the training's."""
        return self.warning_for(str(file), self.of(file))

    def warning_for(self, name: str, mine: tuple[float, float] | None) -> str | None:
        """warning() for an input called `name` of pixel width and height `mine` in metres (None: unknown)."""
        if self.match:
            if mine is not None:
                return None
            return (f"warning: {name}: declares no pixel size, so it was predicted at its own scale, not matched to the "
                    "training images'; give its size with --pixel-size (e.g. --pixel-size 8nm)")
        if mine is None or self.training_m is None:
            return None
        if same_scale(mine[0], self.training_m[0]):
            return None
        ratio = mine[0] / self.training_m[0]
        looks = f"{1 / ratio:.2g}x larger" if ratio < 1 else f"{ratio:.2g}x smaller"
        trained = readable_length(self.training_m[0])
        return (f"warning: {name}: its pixels are {readable_length(mine[0])} wide, the training images' {trained}, so "
                f"its objects look {looks} to the network than any it learnt, and its mask may be wrong: predict with "
                f"--match-pixel-size (resampled to {trained} pixels and back), or fine-tune on a few such images "
                "(train --from RUN)")

    def key(self) -> dict[str, Any]:
        """What of these decides the outputs, for predict's --skip-done record."""
        return {"match_m": self.training_m if self.match else None, "given_m": self.given_m}


def scaled_shape(shape: tuple[int, ...], factors: tuple[float, float]) -> tuple[int, int]:
    """A page's (height, width) resampled by `factors`, at least one pixel each way."""
    return max(1, round(shape[0] * factors[0])), max(1, round(shape[1] * factors[1]))


def check_resampling_fits(name: str, pixels: int, factors: tuple[float, float], channels: int, classes: int,
                          largest: int) -> None:
    """Refuse (one line, before any work) a page of `pixels` that resampled by `factors` would not fit: its
    image and class maps at both sizes, with resize's temporaries, over RESAMPLING_MEMORY_SHARE of the free
    memory, or either size over `largest` pixels (pages that large are streamed, which resampling cannot be)."""
    scaled = pixels * factors[0] * factors[1]
    need = BYTES_PER_VALUE * (scaled + pixels) * (channels + classes)
    free = available_memory_bytes()
    if max(pixels, scaled) > largest or need > RESAMPLING_MEMORY_SHARE * free:
        raise InputError(f"{name}: resampled to the training pixel size it is {scaled / 1e6:.3g} million pixels, which "
                         f"with its class maps needs about {need / 2**30:.3g} GiB ({free / 2**30:.3g} GiB are free); "
                         "rescale it yourself (Fiji: Image > Scale) and predict that, or cut it into smaller images")


def resample(array: np.ndarray, shape: tuple[int, int], channels_last: bool) -> np.ndarray:
    """`array` (H, W[, C] with `channels_last`, else C, H, W) resampled to `shape` as float32: linear
    interpolation, with a Gaussian against aliasing where it shrinks (skimage.transform.resize). Linear weights
    sum to one, so class probabilities stay probabilities."""
    height, width = array.shape[:2] if channels_last else array.shape[-2:]
    target = (*shape, *array.shape[2:]) if channels_last else (*array.shape[:-2], *shape)
    resampled = resize(array.astype(np.float32, copy=False), target, order=1, mode="reflect", preserve_range=True,
                       anti_aliasing=shape[0] < height or shape[1] < width)
    return resampled.astype(np.float32, copy=False)


def resample_image(page: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An (H, W[, C]) image page resampled to `shape` in its own dtype (integers rounded and clipped to their
    range), as Fiji's Scale would give it: the run's normalisation checks and scales it as it would the file."""
    resampled = resample(page, shape, channels_last=True)
    if np.issubdtype(page.dtype, np.integer):
        limits = np.iinfo(page.dtype)
        resampled = np.clip(np.rint(resampled), limits.min, limits.max)
    return resampled.astype(page.dtype, copy=False)


def nearest(label: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A mask (H, W[, C]) resampled to `shape` by nearest neighbour at the new pixels' centres: its values stay
    the classes (or colours, or object ids) they were."""
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * label.shape[0] / shape[0]).astype(int), label.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * label.shape[1] / shape[1]).astype(int), label.shape[1] - 1)
    return label[rows][:, cols]


def at_pixel_size(pairs: list[RawPair], target_m: tuple[float, float]) -> tuple[list[RawPair], set[Path]]:
    """train --match-pixel-size: the pairs whose image files declare a pixel size other than `target_m` (width,
    height in metres; beyond MATCH_TOLERANCE) resampled to it, images linearly and masks by nearest neighbour;
    pairs of files that declare none stay as they are. Returns the pairs and the image files resampled.
    A file more than MAX_RESAMPLING off is refused: its declaration is wrong, not its scale."""
    sizes = PixelSizes(target_m, match=True)
    declared: dict[Path, tuple[float, float] | None] = {}
    resampled: list[RawPair] = []
    changed: set[Path] = set()
    for pair in pairs:
        path = pair.image.path
        if path not in declared:
            declared[path] = sizes.of(path)
        factors = sizes.scale_for(str(path), declared[path])
        if factors is None:
            resampled.append(pair)
            continue
        shape = scaled_shape(pair.image.array.shape, factors)
        resampled.append(RawPair(replace(pair.image, array=resample_image(pair.image.array, shape)),
                                 replace(pair.label, array=nearest(pair.label.array, shape))))
        changed.add(path)
    return resampled, changed
