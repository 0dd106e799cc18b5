"""Training images for a diffusion model: read, normalise to [-1, 1], cut random square patches.

With labels the images are paired with masks as for segmentation (same
readers, same checks), and each patch comes with its label patch, so the model
learns p(image | label map).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unetkit.data.augment import dihedral_maps
from unetkit.data.dataset import check_images_alike, read_pairs
from unetkit.data.io import read_image_pages, refuse_predictions_folder
from unetkit.data.labels import LabelEncoding
from unetkit.data.normalize import Normalization
from unetkit.errors import InputError


@dataclass
class DiffusionData:
    images: list[torch.Tensor]  # C x H x W in [-1, 1]
    labels: list[torch.Tensor] | None  # H x W class maps, or None for an unconditional model
    normalization: Normalization
    encoding: LabelEncoding | None
    names: list[str]


def to_model_range(normalised: np.ndarray) -> torch.Tensor:
    """Normalised [0, 1] intensities (percentile-scaled, may overshoot) -> [-1, 1], clipped."""
    return torch.from_numpy(np.clip(2.0 * normalised - 1.0, -1.0, 1.0).astype(np.float32))


def to_image_values(samples: torch.Tensor, normalization: Normalization) -> np.ndarray:
    """[-1, 1] samples B x C x H x W -> arrays in the training images' dtype and range, B x H x W (x C)."""
    unit = (samples.float().clamp(-1, 1) + 1) / 2
    low = torch.tensor(normalization.low)[None, :, None, None]
    high = torch.tensor(normalization.high)[None, :, None, None]
    values = (low + unit * (high - low)).numpy()
    dtype = np.dtype(normalization.source_dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    values = values.astype(dtype)
    return values[:, 0] if values.shape[1] == 1 else values.transpose(0, 2, 3, 1)


def load_diffusion_data(images: Path, labels: Path | None, size: int, size_step: int = 8) -> DiffusionData:
    """Read everything once; every image must be at least `size` pixels on each side (`size_step`: what --size
    must be a multiple of, for the advice when an image is smaller)."""
    refuse_predictions_folder(images, "--images")  # a folder of masks or samples unetkit wrote, grid and all
    if labels is not None:
        refuse_predictions_folder(labels, "--labels")
        pairs, palette = read_pairs(images, labels)
        arrays = [p.image.array for p in pairs]
        names, places = [p.name for p in pairs], [p.image.location for p in pairs]
        encoding = LabelEncoding.from_masks([(p.label.location, p.label.array) for p in pairs], palette)
        label_maps = [torch.from_numpy(encoding.to_classes(p.label.array, p.label.location).astype(np.int64))
                      for p in pairs]
    else:
        pages = read_image_pages(images)
        if not pages:
            raise InputError(f"{images}: holds no images; give a folder of PNG/TIFF images or a stack")
        check_images_alike(images, pages)
        arrays, names, encoding, label_maps = [p.array for p in pages], [p.name for p in pages], None, None
        places = [p.location for p in pages]
    for place, array in zip(places, arrays):
        if min(array.shape[:2]) < size:
            largest = min(array.shape[:2]) // size_step * size_step
            fix = f"give --size {largest} or less, or leave the image out" if largest >= 8 else "leave the image out"
            raise InputError(f"{place}: {array.shape[1]} x {array.shape[0]} pixels (width x height), smaller than the "
                             f"--size {size} patches; {fix}")
    normalization = Normalization.fit(arrays, "percentile")
    tensors = [to_model_range(normalization.apply(array, place)) for place, array in zip(places, arrays)]
    return DiffusionData(tensors, label_maps, normalization, encoding, names)


def sample_patches(
    data: DiffusionData, batch: int, size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`batch` random size x size crops (and their label crops), each under one of the 8 flips/rotations."""
    picks = torch.randint(0, len(data.images), (batch,), generator=generator).tolist()
    images, labels = [], []
    for index in picks:
        image = data.images[index]
        top = int(torch.randint(0, image.shape[-2] - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, image.shape[-1] - size + 1, (1,), generator=generator))
        images.append(image[:, top : top + size, left : left + size])
        if data.labels is not None:
            labels.append(data.labels[index][top : top + size, left : left + size])
    stacked = torch.stack(images)
    maps = [torch.stack(labels)] if labels else []
    stacked, maps = dihedral_maps(stacked, maps, generator)
    return stacked, (maps[0] if maps else None)
