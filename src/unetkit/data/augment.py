"""Paired augmentation on batches of tensors: geometry moves image, label and weights together.

Every random number comes from the generator passed in, so a run with a seed
repeats exactly. Labels never gain new values: flips and 90-degree rotations
permute pixels, and the general warp reads labels by nearest neighbour.

Named augmentations (`augment_batch(name, ...)`, the trainer's entry point):

- "none": nothing.
- "seed": the tutorial's flips (per sample none, left-right, top-bottom or both).
- "default": one of the 8 flips/rotations of the square, then contrast and
  brightness jitter (`dihedral` + `intensity_jitter`); exact pixel permutations.
- "paper": `AugmentConfig.paper()`, Ronneberger et al. 2015: elastic deformation
  (3 x 3 grid, 10 px), rotation by any angle, flips, shifts, grey value changes.
- "strong": `AugmentConfig.strong()`, the paper's plus zoom and larger grey value changes.

An `AugmentConfig` can also be passed instead of a name. The general path
(`augment`) builds one sampling grid per sample (elastic field + affine map,
see `unetkit.data.elastic`) and resamples the whole batch with one
`grid_sample` call for images (bilinear), one for labels (nearest) and one for
weights (bilinear); then changes grey values of the images only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable

import torch
import torch.nn.functional as F

from unetkit.data.elastic import elastic_displacement, elastic_grid, sampling_grid, warp

__all__ = [
    "AUGMENTATIONS", "AugmentConfig", "augment", "augment_batch", "available_augmentations", "contrast_change",
    "dihedral", "elastic_grid", "gamma_change", "gaussian_blur", "intensity_jitter", "seed_flips",
]  # fmt: skip

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]  # images, labels, weights (or None)


# --- the configurable path ---------------------------------------------------------


@dataclass(frozen=True)
class AugmentConfig:
    """What `augment` does; the defaults are the paper's preset (`AugmentConfig.paper()`).

    Geometry (image, label and weights together; skipped entirely when all off):
    elastic displacements ~ N(0, elastic_sigma_px^2) on an elastic_grid x elastic_grid
    grid, bicubic to every pixel, applied to a sample with probability elastic_p;
    rotation by an angle uniform in [0, 360) degrees; left-right and top-bottom flips,
    each with probability 1/2; shift uniform in [-shift_px, shift_px] per axis;
    zoom log-uniform in `scale` (> 1 magnifies).

    Grey values (images only; each applied to a sample with its probability, in
    this order): gamma log-uniform in `gamma` on the sample's min-max range;
    contrast factor uniform in [1 - contrast, 1 + contrast] about the sample mean;
    brightness offset uniform in [-brightness, brightness]; Gaussian blur with sigma
    uniform in [0, blur_sigma_px] pixels; Gaussian noise with standard deviation
    uniform in [0, noise_std]. Offsets and noise are in image units (normalised
    images span about 0..1).
    """

    elastic_sigma_px: float = 10.0
    elastic_grid: int = 3
    elastic_p: float = 1.0
    rotate: bool = True
    flip: bool = True
    shift_px: float = 10.0
    scale: tuple[float, float] = (1.0, 1.0)
    gamma: tuple[float, float] = (0.8, 1.25)
    gamma_p: float = 0.5
    contrast: float = 0.2
    contrast_p: float = 0.5
    brightness: float = 0.1
    brightness_p: float = 0.5
    blur_sigma_px: float = 1.0
    blur_p: float = 0.2
    noise_std: float = 0.03
    noise_p: float = 0.2

    def __post_init__(self) -> None:
        for name in ("scale", "gamma"):  # a list from JSON compares unequal to a tuple
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_p") and not 0 <= value <= 1:
                raise ValueError(f"augment {f.name}={value}: must be a probability in [0, 1]")
        for name in ("elastic_sigma_px", "shift_px", "brightness", "blur_sigma_px", "noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment {name}={getattr(self, name)}: must be >= 0")
        if not 0 <= self.contrast < 1:
            raise ValueError(f"augment contrast={self.contrast}: must be in [0, 1) so the factor stays positive")
        if isinstance(self.elastic_grid, bool) or not isinstance(self.elastic_grid, int) or self.elastic_grid < 1:
            raise ValueError(f"augment elastic_grid={self.elastic_grid!r}: must be a whole number >= 1")
        for name in ("scale", "gamma"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"augment {name}=({low}, {high}): need 0 < low <= high")

    @classmethod
    def none(cls) -> "AugmentConfig":
        """Nothing at all: `augment` returns its inputs."""
        return cls(
            elastic_sigma_px=0.0, rotate=False, flip=False, shift_px=0.0, scale=(1.0, 1.0),
            gamma=(1.0, 1.0), contrast=0.0, brightness=0.0, blur_sigma_px=0.0, noise_std=0.0,
        )  # fmt: skip

    @classmethod
    def paper(cls) -> "AugmentConfig":
        """Ronneberger et al. 2015: elastic 3 x 3 grid, sigma 10 px; any rotation; flips; shifts; grey values."""
        return cls()

    @classmethod
    def strong(cls) -> "AugmentConfig":
        """The paper's geometry plus zoom 0.8..1.25 and more, and more frequent, grey value change."""
        return cls(
            shift_px=16.0, scale=(0.8, 1.25), gamma=(0.7, 1.4), gamma_p=0.5, contrast=0.3, contrast_p=0.7,
            brightness=0.15, brightness_p=0.7, blur_sigma_px=1.5, blur_p=0.3, noise_std=0.05, noise_p=0.3,
        )  # fmt: skip

    @property
    def moves(self) -> bool:
        """Whether any geometric transform is on (else images, labels and weights are not resampled)."""
        elastic = self.elastic_sigma_px > 0 and self.elastic_p > 0
        return elastic or self.rotate or self.flip or self.shift_px > 0 or self.scale != (1.0, 1.0)


def augment(
    config: AugmentConfig,
    images: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    weights: torch.Tensor | None = None,
) -> Batch:
    """Geometry on images, labels and weights with one grid per sample, then grey values on images.

    images: B x C x H x W float, labels: B x H x W integer, weights: B x H x W float or None.
    Returns (images, labels, weights) of the same shapes and dtypes; the inputs are
    never modified (returned as they are when nothing applies).
    """
    _check_batch(images, labels, weights)
    if config.moves:
        images, labels, weights = _move(config, images, labels, weights, generator)
    return _change_grey_values(config, images, generator), labels, weights


def _uniform(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=generator, device=generator.device)


def _log_uniform(generator: torch.Generator, batch: int, low: float, high: float) -> torch.Tensor:
    return torch.exp(math.log(low) + _uniform(generator, batch) * (math.log(high) - math.log(low)))


def _move(config: AugmentConfig, images: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None, generator: torch.Generator) -> Batch:
    """Draw every sample's transform (in a fixed order), build the grids, warp once."""
    batch, _, height, width = images.shape
    angle = _uniform(generator, batch) * (2 * math.pi) if config.rotate else None  # B radians
    flips = _uniform(generator, batch, 2) < 0.5 if config.flip else None  # B x 2 (x, y)
    shift = (_uniform(generator, batch, 2) * 2 - 1) * config.shift_px if config.shift_px > 0 else None  # B x 2 px
    scale = _log_uniform(generator, batch, *config.scale) if config.scale != (1.0, 1.0) else None  # B
    displacement, elastic = None, torch.zeros(batch, dtype=torch.bool, device=generator.device)
    if config.elastic_sigma_px > 0 and config.elastic_p > 0:
        elastic = _uniform(generator, batch) < config.elastic_p  # B
        field = elastic_displacement(batch, height, width, generator, config.elastic_grid, config.elastic_sigma_px)
        displacement = field * elastic[:, None, None, None]  # B x H x W x 2 px
    grid = sampling_grid(
        height, width, angle=angle, flip_x=None if flips is None else flips[:, 0],
        flip_y=None if flips is None else flips[:, 1], scale=scale, shift=shift, displacement=displacement,
    )  # fmt: skip
    warped = warp(images, grid.to(images.device), labels, weights)

    # A float32 grid reads pixel x at x * (1 +- 1e-7), not exactly at x, so samples whose
    # draw is the identity (possible with elastic_p < 1) keep their input instead.
    moved = elastic.clone()  # B
    if angle is not None:
        moved |= angle != 0
    if flips is not None:
        moved |= flips.any(dim=1)
    if shift is not None:
        moved |= (shift != 0).any(dim=1)
    if scale is not None:
        moved |= scale != 1
    if bool(moved.all()):
        return warped
    moved = moved.to(images.device)
    return tuple(
        None if new is None else torch.where(moved.reshape(-1, *[1] * (new.ndim - 1)), new, old)
        for new, old in zip(warped, (images, labels, weights))
    )  # type: ignore[return-value]


def _change_grey_values(config: AugmentConfig, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each change picks its samples with its probability; samples not picked keep their exact values."""
    batch = images.shape[0]

    def per_sample(values: torch.Tensor) -> torch.Tensor:
        return values.to(images.device)[:, None, None, None]  # B -> B x 1 x 1 x 1

    def apply(images: torch.Tensor, p: float, change: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        chosen = per_sample(_uniform(generator, batch) < p)  # B x 1 x 1 x 1
        return torch.where(chosen, change(images), images)

    if config.gamma != (1.0, 1.0) and config.gamma_p > 0:
        exponent = per_sample(_log_uniform(generator, batch, *config.gamma)).to(images)
        images = apply(images, config.gamma_p, lambda x: gamma_change(x, exponent))
    if config.contrast > 0 and config.contrast_p > 0:
        factor = per_sample(1 + (_uniform(generator, batch) * 2 - 1) * config.contrast).to(images)
        images = apply(images, config.contrast_p, lambda x: contrast_change(x, factor))
    if config.brightness > 0 and config.brightness_p > 0:
        offset = per_sample((_uniform(generator, batch) * 2 - 1) * config.brightness).to(images)
        images = apply(images, config.brightness_p, lambda x: x + offset)
    if config.blur_sigma_px > 0 and config.blur_p > 0:
        sigma = _uniform(generator, batch) * config.blur_sigma_px  # B
        images = apply(images, config.blur_p, lambda x: gaussian_blur(x, sigma))
    if config.noise_std > 0 and config.noise_p > 0:
        std = per_sample(_uniform(generator, batch) * config.noise_std).to(images)
        noise = torch.randn(images.shape, generator=generator, device=generator.device).to(images)  # B x C x H x W
        images = apply(images, config.noise_p, lambda x: x + noise * std)
    return images


def contrast_change(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """(x - mean) * factor + mean per sample; images: B x C x H x W, factor: B x 1 x 1 x 1."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * factor + mean


def gamma_change(images: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """x -> lo + (hi - lo) * ((x - lo) / (hi - lo)) ** exponent, with lo, hi each sample's min and max.

    images: B x C x H x W, exponent: B x 1 x 1 x 1. Keeps each sample's range and order of values.
    """
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    span = (images.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(torch.finfo(images.dtype).tiny)
    return low + span * ((images - low) / span).clamp(0, 1) ** exponent


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """B x C x H x W blurred per sample by a separable Gaussian of sigma[b] pixels (sigma: B).

    The kernel reaches 3 sigma (cut to the image size), borders reflect; sigma 0 is the identity.
    """
    batch, channels, height, width = images.shape
    radius = math.ceil(3 * float(sigma.max())) if batch else 0
    if radius == 0:
        return images
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    spread = sigma.to(images).clamp_min(1e-6)[:, None]  # B x 1; sigma 0 gives the kernel [.. 0 1 0 ..]
    kernel = torch.exp(-(offsets**2) / (2 * spread**2)).repeat_interleave(channels, dim=0)  # BC x K
    out = images.reshape(1, batch * channels, height, width)
    for dim, size in ((-1, width), (-2, height)):
        reach = min(radius, size - 1)
        taps = kernel[:, radius - reach : radius + reach + 1]
        taps = taps / taps.sum(dim=1, keepdim=True)  # BC x (2 reach + 1)
        if dim == -1:
            out = F.conv2d(F.pad(out, (reach, reach, 0, 0), mode="reflect"), taps[:, None, None, :], groups=batch * channels)
        else:
            out = F.conv2d(F.pad(out, (0, 0, reach, reach), mode="reflect"), taps[:, None, :, None], groups=batch * channels)
    return out.reshape(batch, channels, height, width)


def _check_batch(images: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None) -> None:
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images {tuple(images.shape)} {images.dtype}: expected B x C x H x W floats")
    expected = (images.shape[0], *images.shape[2:])
    if tuple(labels.shape) != expected or labels.is_floating_point():
        raise ValueError(f"labels {tuple(labels.shape)} {labels.dtype}: expected {expected} integers for images {tuple(images.shape)}")
    if weights is not None and (tuple(weights.shape) != expected or not weights.is_floating_point()):
        raise ValueError(f"weights {tuple(weights.shape)} {weights.dtype}: expected {expected} floats like the labels")


# --- exact pixel permutations (the "seed" and "default" names) -------------------------


def _per_sample(batch_size: int, generator: torch.Generator, high: int) -> list[int]:
    return torch.randint(0, high, (batch_size,), generator=generator).tolist()


def _seed_flips(images: torch.Tensor, maps: list[torch.Tensor], generator: torch.Generator) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """`seed_flips` on images and any number of B x H x W maps (labels, weights) alike."""
    images, maps = images.clone(), [m.clone() for m in maps]
    for i, choice in enumerate(_per_sample(len(images), generator, 4)):
        dims = [(), (-1,), (-2,), (-2, -1)][choice]
        if dims:
            images[i] = images[i].flip(dims)
            for m in maps:
                m[i] = m[i].flip(dims)
    return images, maps


def dihedral_maps(images: torch.Tensor, maps: list[torch.Tensor], generator: torch.Generator) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """`dihedral` on images and any number of B x H x W maps (labels, weights) alike."""
    square = images.shape[-1] == images.shape[-2]
    out_images, out_maps = [], [[] for _ in maps]
    for i, choice in enumerate(_per_sample(len(images), generator, 8)):
        turns, flip = (choice % 4 if square else 2 * (choice % 2)), choice >= 4
        for tensor, out in [(images, out_images)] + list(zip(maps, out_maps)):
            moved = torch.rot90(tensor[i], turns, (-2, -1))
            out.append(moved.flip(-1) if flip else moved)
    return torch.stack(out_images), [torch.stack(out) for out in out_maps]


def seed_flips(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The tutorial's augmentation: per sample one of horizontal flip, vertical flip, both, or none.

    images: B x C x H x W, labels: B x H x W.
    """
    images, (labels,) = _seed_flips(images, [labels], generator)
    return images, labels


def dihedral(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample one of the 8 flips/rotations of the square (microscopy has no up or left).

    Needs square patches when a rotation is drawn; non-square batches only get flips.
    """
    images, (labels,) = dihedral_maps(images, [labels], generator)
    return images, labels


def intensity_jitter(
    images: torch.Tensor, generator: torch.Generator, contrast: float = 0.2, brightness: float = 0.1
) -> torch.Tensor:
    """Per sample contrast and brightness change about the sample mean: staining and exposure vary."""
    batch = images.shape[0]
    scale = 1.0 + (torch.rand(batch, 1, 1, 1, generator=generator) * 2 - 1) * contrast
    shift = (torch.rand(batch, 1, 1, 1, generator=generator) * 2 - 1) * brightness
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * scale.to(images) + mean + shift.to(images)


# --- names ---------------------------------------------------------------------------

Augmentation = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None", torch.Generator], Batch]


def _permuting(permute: Callable, jitter: bool = False) -> Augmentation:
    """A named augmentation from a pixel permutation of images, labels and weights (+ intensity jitter)."""

    def run(images: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None, generator: torch.Generator) -> Batch:
        images, maps = permute(images, [labels] if weights is None else [labels, weights], generator)
        if jitter:
            images = intensity_jitter(images, generator)
        return images, maps[0], None if weights is None else maps[1]

    return run


def _configured(config: AugmentConfig) -> Augmentation:
    return lambda images, labels, weights, generator: augment(config, images, labels, generator, weights)


AUGMENTATIONS: dict[str, Augmentation] = {
    "none": lambda images, labels, weights, generator: (images, labels, weights),
    "seed": _permuting(_seed_flips),
    "default": _permuting(dihedral_maps, jitter=True),
    "paper": _configured(AugmentConfig.paper()),
    "strong": _configured(AugmentConfig.strong()),
}


def available_augmentations() -> list[str]:
    return list(AUGMENTATIONS)


def augment_batch(
    name: str | AugmentConfig,
    images: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ...]:
    """Apply the augmentation named in the training config, or the given `AugmentConfig`.

    images: B x C x H x W float, labels: B x H x W integer, weights: B x H x W float
    (loss weights, moved with the labels). Returns (images, labels), or
    (images, labels, weights) when weights are given.
    """
    if isinstance(name, AugmentConfig):
        transform = _configured(name)
    elif name in AUGMENTATIONS:
        transform = AUGMENTATIONS[name]
    else:
        raise ValueError(f"unknown augmentation {name!r}; choose one of {', '.join(AUGMENTATIONS)}")
    _check_batch(images, labels, weights)
    images, labels, moved_weights = transform(images, labels, weights, generator)
    return (images, labels) if weights is None else (images, labels, moved_weights)
