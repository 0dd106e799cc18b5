"""Paired augmentation on batches of tensors: geometry moves image and label together.

Every random number comes from the generator passed in, so a run with a seed
repeats exactly. Geometric transforms here are exact pixel permutations
(flips, 90-degree rotations), so labels never gain new values.
"""

from __future__ import annotations

import torch


def _per_sample(batch_size: int, generator: torch.Generator, high: int) -> list[int]:
    return torch.randint(0, high, (batch_size,), generator=generator).tolist()


def seed_flips(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The tutorial's augmentation: per sample one of horizontal flip, vertical flip, both, or none.

    images: B x C x H x W, labels: B x H x W.
    """
    images, labels = images.clone(), labels.clone()
    for i, choice in enumerate(_per_sample(len(images), generator, 4)):
        dims = [(), (-1,), (-2,), (-2, -1)][choice]
        if dims:
            images[i] = images[i].flip(dims)
            labels[i] = labels[i].flip(dims)
    return images, labels


def dihedral(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample one of the 8 flips/rotations of the square (microscopy has no up or left).

    Needs square patches when a rotation is drawn; non-square batches only get flips.
    """
    square = images.shape[-1] == images.shape[-2]
    out_images, out_labels = [], []
    for image, label, choice in zip(images, labels, _per_sample(len(images), generator, 8)):
        turns, flip = (choice % 4 if square else 2 * (choice % 2)), choice >= 4
        image, label = torch.rot90(image, turns, (-2, -1)), torch.rot90(label, turns, (-2, -1))
        if flip:
            image, label = image.flip(-1), label.flip(-1)
        out_images.append(image)
        out_labels.append(label)
    return torch.stack(out_images), torch.stack(out_labels)


def intensity_jitter(
    images: torch.Tensor, generator: torch.Generator, contrast: float = 0.2, brightness: float = 0.1
) -> torch.Tensor:
    """Per sample contrast and brightness change about the sample mean: staining and exposure vary."""
    batch = images.shape[0]
    scale = 1.0 + (torch.rand(batch, 1, 1, 1, generator=generator) * 2 - 1) * contrast
    shift = (torch.rand(batch, 1, 1, 1, generator=generator) * 2 - 1) * brightness
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) * scale.to(images) + mean + shift.to(images)


def augment_batch(
    name: str, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the augmentation named in the training config ("none", "seed", "default")."""
    if name == "none":
        return images, labels
    if name == "seed":
        return seed_flips(images, labels, generator)
    if name == "default":
        images, labels = dihedral(images, labels, generator)
        return intensity_jitter(images, generator), labels
    raise ValueError(f"unknown augmentation {name!r}")
