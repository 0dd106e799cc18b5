"""Label-conditioned synthetic training pairs from a diffusion run (`unetkit train --synthetic RUN`).

Labels are scarce; a diffusion model trained on the same images with their
label maps (`unetkit diffusion train --labels`) can draw new images for new
label maps. The label maps here are patches cut from the training labels and
deformed elastically (3 x 3 grid, as in the U-Net paper) and by one of the 8
flips/rotations, so the pairs are new layouts of real structures. The images
are mapped to the segmentation run's normalisation, and the trainer samples a
set share of its patches from them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from unetkit.data.augment import dihedral_maps
from unetkit.data.dataset import TensorPairs
from unetkit.data.elastic import elastic_grid, warp
from unetkit.data.labels import LabelEncoding
from unetkit.data.normalize import Normalization
from unetkit.diffusion.data import to_image_values
from unetkit.diffusion.generate import generate, load_diffusion_run
from unetkit.errors import InputError

SAMPLING_STEPS = 25  # DDIM steps per synthetic image
ELASTIC_SIGMA_PX = 10.0


def deformed_label_patches(
    labels: list[torch.Tensor], count: int, size: int, generator: torch.Generator
) -> torch.Tensor:
    """count x size x size class maps: random crops of the label maps, elastically deformed and turned."""
    picks = torch.randint(0, len(labels), (count,), generator=generator).tolist()
    crops = []
    for index in picks:
        label = labels[index]
        height, width = label.shape
        if min(height, width) < size:
            raise InputError(f"synthetic patches of {size} px need training masks at least that large; lower --patch-size")
        top = int(torch.randint(0, height - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - size + 1, (1,), generator=generator))
        crops.append(label[top : top + size, left : left + size].long())
    maps = torch.stack(crops)
    grid = elastic_grid(count, size, size, generator, sigma_px=ELASTIC_SIGMA_PX)
    _, maps, _ = warp(torch.zeros(count, 1, size, size), grid, labels=maps)
    _, (maps,) = dihedral_maps(torch.zeros(count, 1, size, size), [maps], generator)
    return maps


def synthetic_pairs(
    run_dir: Path, labels: list[torch.Tensor], encoding: LabelEncoding, normalization: Normalization,
    count: int, size: int, seed: int, device: str = "cpu", say: Callable[[str], None] = print,
) -> TensorPairs:
    """`count` generated pairs of size x size, normalised like the real training images."""
    started = time.monotonic()
    run = load_diffusion_run(run_dir, device)
    if run.encoding is None:
        raise InputError(f"--synthetic {run_dir}: was trained without labels; train it with `unetkit diffusion train --labels`")
    if list(run.encoding.values) != list(encoding.values):
        raise InputError(f"--synthetic {run_dir}: its classes {run.encoding.describe_values()} differ from the masks' "
                         f"{encoding.describe_values()}; train the diffusion run on these labels")
    multiple = 2**run.model.config.depth
    size = max(multiple, size // multiple * multiple)
    generator = torch.Generator().manual_seed(seed)
    maps = deformed_label_patches(labels, count, size, generator)
    samples = generate(run, count, (size, size), seed=seed, labels=maps, steps=min(SAMPLING_STEPS, run.schedule.steps))
    values = to_image_values(samples, run.normalization)
    names = [f"synthetic-{i:03d}" for i in range(count)]
    images = [torch.from_numpy(normalization.apply(value, name)) for value, name in zip(values, names)]
    say(f"synthetic pairs: {count} of {size} x {size} from {run_dir} in {time.monotonic() - started:.0f} s")
    return TensorPairs(names, images, [m.to(labels[0].dtype) for m in maps])
