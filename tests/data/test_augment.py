"""Paired augmentation: geometry moves image, label and weights together, labels keep their values, seeds repeat."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from unetkit.data.augment import (
    AugmentConfig,
    augment,
    augment_batch,
    available_augmentations,
    dihedral,
    gaussian_blur,
    intensity_jitter,
    seed_flips,
)
from unetkit.data.elastic import elastic_displacement, elastic_grid, identity_grid, sampling_grid, warp

NAMES = ["none", "seed", "default"]  # exact pixel permutations: counts of label values are kept
ALL_NAMES = NAMES + ["paper", "strong"]
GREY_OFF = dict(gamma_p=0.0, contrast_p=0.0, brightness_p=0.0, blur_p=0.0, noise_p=0.0)
GEOMETRY_OFF = dict(elastic_sigma_px=0.0, rotate=False, flip=False, shift_px=0.0, scale=(1.0, 1.0))


def _pair(batch: int = 6, height: int = 8, width: int = 8, channels: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 4-class labels, and images that are the label as float in every channel."""
    labels = torch.randint(0, 4, (batch, height, width), generator=torch.Generator().manual_seed(seed))
    images = labels[:, None].float().repeat(1, channels, 1, 1)
    return images, labels


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [(8, 8), (6, 10), (7, 7)])
def test_labels_keep_their_values_and_counts(name: str, size: tuple[int, int]) -> None:
    images, labels = _pair(height=size[0], width=size[1])
    out_images, out_labels = augment_batch(name, images, labels, _gen(1))
    assert out_images.shape == images.shape and out_labels.shape == labels.shape
    assert out_labels.dtype == labels.dtype and out_images.dtype == images.dtype
    for before, after in zip(labels, out_labels):  # a permutation of each sample's pixels
        assert torch.equal(torch.bincount(before.flatten(), minlength=4), torch.bincount(after.flatten(), minlength=4))


@pytest.mark.parametrize("name", ["none", "seed"])
@pytest.mark.parametrize("size", [(8, 8), (6, 10)])
def test_geometry_keeps_image_and_label_aligned(name: str, size: tuple[int, int]) -> None:
    images, labels = _pair(height=size[0], width=size[1])
    out_images, out_labels = augment_batch(name, images, labels, _gen(2))
    assert torch.equal(out_images, out_labels[:, None].float().expand_as(out_images))


@pytest.mark.parametrize("size", [(8, 8), (6, 10)])
def test_dihedral_keeps_image_and_label_aligned(size: tuple[int, int]) -> None:
    images, labels = _pair(batch=16, height=size[0], width=size[1])
    out_images, out_labels = dihedral(images, labels, _gen(3))
    assert out_images.shape == images.shape
    assert torch.equal(out_images, out_labels[:, None].float().expand_as(out_images))
    assert not torch.equal(out_labels, labels)  # it did move something


def test_default_keeps_alignment_under_intensity_change() -> None:
    """After jitter each label value still maps to one image value per sample, in the same order."""
    images, labels = _pair(batch=8)
    out_images, out_labels = augment_batch("default", images, labels, _gen(4))
    assert not torch.equal(out_images, out_labels[:, None].float().expand_as(out_images))  # intensities changed
    for image, label in zip(out_images, out_labels):
        levels = []
        for value in range(4):
            pixels = image[:, label == value]
            assert torch.allclose(pixels, pixels.flatten()[0].expand_as(pixels), atol=1e-6)
            levels.append(float(pixels.flatten()[0]))
        assert levels == sorted(levels)  # positive contrast keeps the order


@pytest.mark.parametrize("name", ALL_NAMES)
def test_same_generator_seed_same_output(name: str) -> None:
    images, labels = _pair(height=16, width=16)
    weights = torch.rand(labels.shape, generator=_gen(55))
    first = augment_batch(name, images, labels, _gen(5), weights)
    second = augment_batch(name, images, labels, _gen(5), weights)
    assert len(first) == 3 and all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("name", ["seed", "default", "paper", "strong"])
def test_different_seeds_differ(name: str) -> None:
    images, labels = _pair(height=16, width=16)
    first = augment_batch(name, images, labels, _gen(5))
    second = augment_batch(name, images, labels, _gen(6))
    assert not torch.equal(first[0], second[0])
    assert not torch.equal(first[1], second[1])


@pytest.mark.parametrize("name", ALL_NAMES)
def test_inputs_are_not_modified(name: str) -> None:
    images, labels = _pair(height=16, width=16)
    weights = torch.rand(labels.shape, generator=_gen(77))
    copies = images.clone(), labels.clone(), weights.clone()
    augment_batch(name, images, labels, _gen(7), weights)
    assert all(torch.equal(a, b) for a, b in zip((images, labels, weights), copies))


def _all_outputs(transform, image: torch.Tensor, draws: int = 400) -> set[tuple[float, ...]]:
    batch = image[None].repeat(draws, 1, 1, 1)
    out, _ = transform(batch, batch[:, 0].long(), _gen(8))
    return {tuple(sample.flatten().tolist()) for sample in out}


def test_dihedral_covers_all_eight_symmetries_of_the_square() -> None:
    image = torch.arange(9.0).reshape(1, 3, 3)
    square = image[0]
    expected = {tuple(torch.rot90(m, k).flatten().tolist()) for m in (square, square.flip(-1)) for k in range(4)}
    assert len(expected) == 8
    assert _all_outputs(dihedral, image) == expected


def test_dihedral_on_non_square_keeps_shape_with_four_symmetries() -> None:
    image = torch.arange(6.0).reshape(1, 2, 3)
    rect = image[0]
    expected = {tuple(m.flatten().tolist()) for m in (rect, rect.flip(-1), rect.flip(-2), rect.flip(-1).flip(-2))}
    assert _all_outputs(dihedral, image) == expected


def test_seed_flips_cover_the_four_flips() -> None:
    image = torch.arange(9.0).reshape(1, 3, 3)
    square = image[0]
    expected = {tuple(m.flatten().tolist()) for m in (square, square.flip(-1), square.flip(-2), square.flip(-1).flip(-2))}
    assert _all_outputs(seed_flips, image) == expected


def test_intensity_jitter_changes_values_not_shape() -> None:
    images = torch.rand(6, 2, 7, 5, generator=_gen(9))
    out = intensity_jitter(images, _gen(10))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert not torch.allclose(out, images)
    for before, after in zip(images, out):  # one affine map per sample, with positive slope
        slope = torch.cov(torch.stack([before.flatten(), after.flatten()]))[0, 1] / before.flatten().var()
        assert 0.8 - 1e-4 <= float(slope) <= 1.2 + 1e-4
        assert torch.allclose(after, (before - before.mean()) * slope + after.mean(), atol=1e-5)


def test_intensity_jitter_with_zero_strength_is_identity() -> None:
    images = torch.rand(3, 1, 4, 4, generator=_gen(11))
    assert torch.allclose(intensity_jitter(images, _gen(12), contrast=0.0, brightness=0.0), images, atol=1e-6)


def test_unknown_augmentation_refused() -> None:
    images, labels = _pair()
    with pytest.raises(ValueError, match="flipflop"):
        augment_batch("flipflop", images, labels, _gen(0))
    assert available_augmentations() == ALL_NAMES
