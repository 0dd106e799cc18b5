"""Intensity normalisation: one documented mapping, fitted on the training images, stored in the run.

`percentile` (the default): per channel, the 0.5th and 99.5th percentiles of all
training pixels are mapped to 0 and 1 (values beyond are kept, not clipped).
Robust to a few saturated pixels, and the same for 8-bit, 16-bit and float data.
`scale` (the seed recipe, as the tutorial did): divide by the integer type's
maximum (255 for the tutorial's 8-bit images, 65535 for 16-bit ones).
Prediction applies the stored numbers, so a run normalises new images exactly
as it normalised its training images.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np

from unetkit.data.io import planar_colour_hint
from unetkit.errors import InputError
from unetkit.text import counted

LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.5
_MAX_SAMPLES_PER_IMAGE = 1 << 18
# The intensity level a new image is compared at: of these percentiles, the one that varies least between the
# training images (the background's side: a denser field of nuclei moves the median, not the 10th percentile).
LEVEL_PERCENTILES = (10.0, 50.0, 90.0)
# How far (a share of high - low) a new image's level may lie beyond the training images' before it is called
# unlike them: LEVEL_MARGIN, plus FEW_IMAGES_MARGIN / n for n training images (one image shows no variation:
# ISBI sections' medians vary by 27 % of the range). A camera offset that turned every nucleus mask foreground
# lay 0.2 beyond.
LEVEL_MARGIN, FEW_IMAGES_MARGIN = 0.12, 0.2
FINITE_CHECK_ROWS = 1024  # rows of a page checked for NaN at once


def channels_first(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) -> (C, H, W)."""
    return image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)


def _conversion(trained: int, given: int) -> str:
    """How to make an image of `given` channels fit a network trained on `trained`."""
    if trained == 1:  # a fluorescence image's channels are stains: greyscale would mix them
        return "keep the one channel it was trained on (e.g. the nuclear stain), or convert colour to greyscale,"
    return f"convert the image ({'to RGB' if trained == 3 else f'to {trained} channels'})"


def _spread_of_the_rest(images: list[np.ndarray], channels: int, channel: int, common: float) -> tuple[float, float]:
    """(low, high) for a channel whose percentiles coincide at `common`: the value almost every pixel has. The few
    other pixels set the other end by their own high (or low) percentile, so one hot pixel does not; without them
    (a constant channel) the scale is 1. Scaling by 1 fed raw values of 65000 to the network."""
    rows = [channels_first(image).reshape(channels, -1)[channel] for image in images]
    rest = np.concatenate([row[np.isfinite(row) & (row != common)] for row in rows]).astype(np.float64)
    above, below = rest[rest > common], rest[rest < common]
    if above.size >= below.size and above.size:
        return common, float(np.percentile(above, HIGH_PERCENTILE))
    if below.size:
        return float(np.percentile(below, LOW_PERCENTILE)), common
    return common, common + 1.0


def pixel_samples(images: list[np.ndarray]) -> list[np.ndarray]:
    """Each (H, W[, C]) image's pixels as a (C, N) float64 array, every (n // 2^18)-th of n: the statistics of
    a large image do not need all of them."""
    samples = []
    for image in images:
        flat = channels_first(image).reshape(channels_first(image).shape[0], -1)
        step = max(1, flat.shape[1] // _MAX_SAMPLES_PER_IMAGE)
        samples.append(flat[:, ::step].astype(np.float64))
    return samples


@dataclass(frozen=True)
class Normalization:
    """x -> (x - low[c]) / (high[c] - low[c]), per channel c."""

    method: str
    low: tuple[float, ...]
    high: tuple[float, ...]
    source_dtype: str  # dtype of the training images; others are refused at prediction
    # per channel (percentile, lowest, highest) of the training images at their steadiest level, and their count
    levels: tuple[tuple[float, float, float], ...] | None = None
    level_images: int = 0

    @classmethod
    def fit(cls, images: list[np.ndarray], method: str = "percentile") -> "Normalization":
        """Fit on training images given as (H, W) or (H, W, C) arrays."""
        dtype = images[0].dtype.name
        channels = channels_first(images[0]).shape[0]
        if method == "scale":  # the tutorial's x / 255, generalised to the integer type's full range
            if images[0].dtype.kind not in "ub":
                raise InputError(f"--normalization scale: divides by an integer type's range, but the images are {dtype}; "
                                 "use --normalization percentile")
            top = 1.0 if images[0].dtype == bool else float(np.iinfo(images[0].dtype).max)
            return cls("scale", (0.0,) * channels, (top,) * channels, dtype)
        if method != "percentile":
            raise InputError(f"--normalization {method}: unknown; use percentile or scale")
        samples = pixel_samples(images)
        pixels = np.concatenate(samples, axis=1)
        # NaN/inf pixels are left out: one would turn low/high into NaN and `apply` would then blame every image.
        finite = [row[np.isfinite(row)] for row in pixels]
        if any(row.size == 0 for row in finite):
            raise InputError("the training images hold no finite values in some channel; replace NaN and infinite values")
        low = np.array([np.percentile(row, LOW_PERCENTILE) for row in finite])
        high = np.array([np.percentile(row, HIGH_PERCENTILE) for row in finite])
        for c in np.flatnonzero(high <= low):  # nearly constant: sparse spots on black (or dark on white)
            low[c], high[c] = _spread_of_the_rest(images, channels, c, low[c])
        fitted = cls("percentile", tuple(low.tolist()), tuple(high.tolist()), dtype)
        return fitted.with_levels_of(samples)

    def check_compatible(self, image: np.ndarray, source: str = "image") -> None:
        """Refuse an (H, W[, C]) image whose channels or pixel type differ from the training images'."""
        channels = 1 if image.ndim == 2 else image.shape[-1]
        if channels != len(self.low):
            raise InputError(
                f"{source}: has {counted(channels, 'channel')} but the model was trained on {len(self.low)}; "
                f"{_conversion(len(self.low), channels)} or train on images like it{planar_colour_hint(source)}"
            )
        if image.dtype.name != self.source_dtype and not (image.dtype.kind == self.source_dtype[0] == "f"):
            raise InputError(
                f"{source}: is {image.dtype.name} but the model was trained on {self.source_dtype} images; "
                f"convert it to {self.source_dtype} or train on {image.dtype.name} images"
            )

    @staticmethod
    def check_finite(image: np.ndarray, source: str = "image") -> None:
        """Refuse a float image holding NaN or infinities (what apply refuses), band by band: a memory-mapped
        page is not held whole."""
        if image.dtype.kind != "f":
            return
        for top in range(0, image.shape[0], FINITE_CHECK_ROWS):
            if not np.isfinite(image[top : top + FINITE_CHECK_ROWS]).all():
                raise InputError(f"{source}: holds NaN or infinite values; replace them before training or prediction")

    def unlike_training(self, image: np.ndarray, source: str = "image") -> str | None:
        """A warning when most of an (H, W[, C]) image lies outside the intensities the training images spanned
        (its median below their low or above their high percentile), or its level lies far beyond theirs (the
        steadiest of LEVEL_PERCENTILES, by LEVEL_MARGIN of that range and more for few images): the network has never
        seen such values, and a brightness offset of new images (another microscope setting) turned every pixel
        foreground without a word. On a dark background the high percentile is the objects' brightness, so an offset
        that lifted the background to the objects' level stayed inside the range. None when it looks like them."""
        if self.method != "percentile":
            return None
        margin_share = LEVEL_MARGIN + FEW_IMAGES_MARGIN / max(1, self.level_images)
        for channel, (plane, low, high) in enumerate(zip(channels_first(image), self.low, self.high)):
            values = plane[::max(1, plane.shape[0] // 512), ::max(1, plane.shape[1] // 512)]  # a sample is enough
            if values.dtype.kind == "f":  # NaN is an error of its own (apply, check_finite), not a level of nan
                values = values[np.isfinite(values)]
                if values.size == 0:
                    continue
            median = float(np.median(values))
            where = f" (channel {channel})" if len(self.low) > 1 else ""
            if median < low or median > high:
                problem = f"its median intensity{where} {median:g} lies outside the range of the training images ({low:g} to {high:g})"
            elif self.levels is not None:  # runs from before the levels were kept have only the range
                percentile, lowest, highest = self.levels[channel]
                level, margin = float(np.percentile(values, percentile)), margin_share * (high - low)
                if lowest - margin <= level <= highest + margin:
                    continue
                name = "median" if percentile == 50 else f"{percentile:g}th percentile"
                problem = (f"its {name} intensity{where} {level:g} lies far from the training images' ({lowest:g} to "
                           f"{highest:g})")
            else:
                continue
            return (f"warning: {source}: {problem}; it was probably acquired or exported differently, so its mask may "
                    "be wrong: check it, or fine-tune on a few such images (train --from RUN)")
        return None

    def with_levels_of(self, samples: list[np.ndarray], widen: bool = False) -> "Normalization":
        """These numbers with the training images' levels (LEVEL_PERCENTILES) measured on `samples`, (C, N) pixels
        of each image; `widen`: added to the levels already kept (fine-tuning on images of a new acquisition,
        which must not be called unlike the run after it learnt them)."""
        if self.method != "percentile":
            return self
        with np.errstate(all="ignore"), warnings.catch_warnings():  # an image all NaN in a channel: no level of its own
            warnings.simplefilter("ignore", RuntimeWarning)
            levels = np.array([np.nanpercentile(np.where(np.isfinite(s), s, np.nan), LEVEL_PERCENTILES, axis=1)
                               for s in samples])  # (images, percentiles, channels)
        if widen and self.levels is None:  # a run from before levels were kept: nothing to widen
            return self
        chosen = []
        for channel in range(len(self.low)):
            spans = {q: (float(np.nanmin(levels[:, i, channel])), float(np.nanmax(levels[:, i, channel])))
                     for i, q in enumerate(LEVEL_PERCENTILES)}
            if widen:  # the run's percentile, its span stretched over the new images
                percentile, lowest, highest = self.levels[channel]
                new_lowest, new_highest = spans.get(percentile, (lowest, highest))
                chosen.append((percentile, min(lowest, new_lowest), max(highest, new_highest)))
            else:
                steadiest = min(spans, key=lambda q: (spans[q][1] - spans[q][0], q != 50.0))
                chosen.append((steadiest, *spans[steadiest]))
        count = len(samples) + (self.level_images if widen else 0)
        return replace(self, levels=tuple(chosen), level_images=count)

    def apply(self, image: np.ndarray, source: str = "image") -> np.ndarray:
        """(H, W[, C]) raw -> (C, H, W) float32 normalised; checks channels and dtype against training."""
        self.check_compatible(image, source)
        chw = channels_first(image)
        low = np.asarray(self.low, dtype=np.float32)[:, None, None]
        high = np.asarray(self.high, dtype=np.float32)[:, None, None]
        out = (chw.astype(np.float32) - low) / (high - low)
        if not np.all(np.isfinite(out)):
            raise InputError(f"{source}: holds NaN or infinite values; replace them before training or prediction")
        return out

    def to_json(self) -> dict:
        record = {"method": self.method, "low": list(self.low), "high": list(self.high), "source_dtype": self.source_dtype}
        if self.levels is not None:
            record["levels"] = [list(level) for level in self.levels]
            record["level_images"] = self.level_images
        return record

    @classmethod
    def from_json(cls, data: dict) -> "Normalization":
        low, high = tuple(float(v) for v in data["low"]), tuple(float(v) for v in data["high"])
        if len(low) != len(high) or not low or not all(math.isfinite(a) and math.isfinite(b) and b > a
                                                        for a, b in zip(low, high)):
            raise ValueError(f"normalization low {list(low)} / high {list(high)}: need finite high > low per channel")
        given = data.get("levels")
        levels = None
        if given is not None:
            levels = tuple((float(q), float(a), float(b)) for q, a, b in given)
            if len(levels) != len(low) or not all(all(map(math.isfinite, level)) and level[1] <= level[2] for level in levels):
                raise ValueError(f"normalization levels {given}: need a finite (percentile, lowest, highest) per channel")
        return cls(data["method"], low, high, data["source_dtype"], levels, int(data.get("level_images", 0)))
