"""Paired augmentation: geometry moves image, label and weights together, labels keep their values, seeds repeat."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace

import pytest
import torch
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


# --- the named augmentations with loss weights ---------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_permutations_move_weights_with_labels(name: str) -> None:
    images, labels = _pair(batch=16, height=8, width=8)
    out_images, out_labels, out_weights = augment_batch(name, images, labels, _gen(13), labels.float())
    assert torch.equal(out_weights, out_labels.float())


def test_default_is_dihedral_then_jitter_with_the_same_random_stream() -> None:
    """The "default" name draws exactly as before: dihedral's choices, then intensity_jitter's."""
    images, labels = torch.rand(5, 2, 9, 9, generator=_gen(14)), torch.randint(0, 3, (5, 9, 9), generator=_gen(15))
    expected_generator = _gen(16)
    moved_images, expected_labels = dihedral(images, labels, expected_generator)
    expected_images = intensity_jitter(moved_images, expected_generator)
    generator = _gen(16)
    out_images, out_labels, _ = augment_batch("default", images, labels, generator, torch.rand(5, 9, 9))
    assert torch.equal(out_images, expected_images) and torch.equal(out_labels, expected_labels)
    assert torch.equal(generator.get_state(), expected_generator.get_state())


def test_weights_returned_only_when_given() -> None:
    images, labels = _pair()
    assert len(augment_batch("paper", images, labels, _gen(0))) == 2
    assert len(augment_batch("paper", images, labels, _gen(0), torch.ones(labels.shape))) == 3


# --- shapes, dtypes and values ----------------------------------------------------------


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("shape", [(1, 1, 8, 8), (3, 1, 7, 13), (3, 3, 16, 9), (1, 2, 33, 33)])
def test_shapes_dtypes_and_label_values_kept(name: str, shape: tuple[int, int, int, int]) -> None:
    batch, channels, height, width = shape
    images = torch.rand(shape, generator=_gen(17))
    labels = torch.randint(0, 5, (batch, height, width), generator=_gen(18)) * 7  # values 0, 7, ..., 28
    weights = torch.rand(batch, height, width, generator=_gen(19), dtype=torch.float64)
    out_images, out_labels, out_weights = augment_batch(name, images, labels, _gen(20), weights)
    assert (out_images.shape, out_images.dtype) == (images.shape, images.dtype)
    assert (out_labels.shape, out_labels.dtype) == (labels.shape, labels.dtype)
    assert (out_weights.shape, out_weights.dtype) == (weights.shape, weights.dtype)
    for before, after in zip(labels, out_labels):
        assert set(after.unique().tolist()) <= set(before.unique().tolist())


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(2, 24),
    width=st.integers(2, 24),
    batch=st.integers(1, 3),
    values=st.lists(st.integers(-5, 2**20), min_size=1, max_size=5, unique=True),
    dtype=st.sampled_from([torch.int64, torch.int32, torch.uint8]),
    sigma=st.sampled_from([1.0, 10.0, 40.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_warping_never_creates_label_values(height, width, batch, values, dtype, sigma, seed) -> None:
    if dtype == torch.uint8:
        values = [v % 256 for v in values]
    table = torch.tensor(values)
    labels = table[torch.randint(0, len(values), (batch, height, width), generator=_gen(seed))].to(dtype)
    config = replace(AugmentConfig.strong(), elastic_sigma_px=sigma)
    _, out_labels = augment_batch(config, torch.rand(batch, 1, height, width), labels, _gen(seed + 1))
    assert out_labels.dtype == dtype
    for before, after in zip(labels, out_labels):
        assert set(after.unique().tolist()) <= set(before.unique().tolist())


def _coordinates(batch: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose channels are each pixel's (x, y), and labels that number the pixels y * W + x."""
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    images = torch.stack([x, y]).float()[None].repeat(batch, 1, 1, 1)  # B x 2 x H x W
    return images, (y * width + x)[None].repeat(batch, 1, 1)


@pytest.mark.parametrize("preset", ["paper", "strong"])
@pytest.mark.parametrize("size", [(64, 64), (37, 50)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_image_label_and_weights_stay_aligned(preset: str, size: tuple[int, int], seed: int) -> None:
    """Bilinear reads of a coordinate ramp give the point read; the label read there is its nearest pixel."""
    height, width = size
    images, labels = _coordinates(4, height, width)
    config = replace(getattr(AugmentConfig, preset)(), **GREY_OFF)
    out_images, out_labels, out_weights = augment(config, images, labels, _gen(seed), weights=images[:, 0].clone())
    nearest = out_images.round()
    tie = ((out_images - out_images.floor() - 0.5).abs() < 1e-3).any(dim=1)  # a rounding tie: either pixel is right
    expected = (nearest[:, 1] * width + nearest[:, 0]).long()
    assert torch.equal(expected[~tie], out_labels[~tie])
    assert torch.equal(out_weights, out_images[:, 0])  # weights: the same bilinear read as the image
    assert not torch.equal(out_labels, labels)  # it did move


@pytest.mark.parametrize("preset", ["paper", "strong"])
def test_grey_values_never_move_labels_or_weights(preset: str) -> None:
    """Grey values are drawn after the geometry: with them off, geometry and labels are the same."""
    images, labels = _pair(batch=4, height=20, width=20)
    weights = torch.rand(labels.shape, generator=_gen(21))
    config = getattr(AugmentConfig, preset)()
    full = augment(config, images, labels, _gen(22), weights)
    geometry = augment(replace(config, **GREY_OFF), images, labels, _gen(22), weights)
    assert torch.equal(full[1], geometry[1]) and torch.equal(full[2], geometry[2])
    assert not torch.equal(full[0], geometry[0])


# --- identity ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        AugmentConfig.none(),
        replace(AugmentConfig.none(), elastic_p=1.0, gamma_p=1.0, contrast_p=1.0, brightness_p=1.0, blur_p=1.0, noise_p=1.0),
        replace(AugmentConfig.paper(), elastic_p=0.0, rotate=False, flip=False, shift_px=0.0, **GREY_OFF),
    ],
    ids=["none", "zero-strength", "zero-probability"],
)
def test_zero_strength_is_exactly_the_identity(config: AugmentConfig) -> None:
    images, labels = torch.rand(3, 2, 572 // 4, 97, generator=_gen(23)), torch.randint(0, 9, (3, 143, 97), generator=_gen(24))
    weights = torch.rand(labels.shape, generator=_gen(25))
    out = augment(config, images, labels, _gen(26), weights)
    assert all(torch.equal(a, b) for a, b in zip(out, (images, labels, weights)))


@pytest.mark.parametrize(
    "grid",
    [
        lambda b, h, w: identity_grid(b, h, w),
        lambda b, h, w: elastic_grid(b, h, w, _gen(27), sigma_px=0.0),
        lambda b, h, w: sampling_grid(h, w, angle=torch.zeros(b), shift=torch.zeros(b, 2), scale=torch.ones(b)),
        lambda b, h, w: sampling_grid(h, w, flip_x=torch.zeros(b, dtype=torch.bool), displacement=torch.zeros(b, h, w, 2)),
    ],
    ids=["identity", "elastic-sigma-0", "affine-0", "flip-none"],
)
@pytest.mark.parametrize("size", [(8, 8), (7, 13), (16, 5)])
def test_zero_strength_grids_read_every_pixel_at_its_centre(grid, size: tuple[int, int]) -> None:
    height, width = size
    images = torch.rand(3, 2, height, width, generator=_gen(28))
    labels = torch.randint(0, 4, (3, height, width), generator=_gen(29))
    out_images, out_labels, out_weights = warp(images, grid(3, height, width), labels, images[:, 0])
    assert torch.equal(out_labels, labels)
    assert torch.allclose(out_images, images, rtol=0, atol=1e-6)
    assert torch.allclose(out_weights, images[:, 0], rtol=0, atol=1e-6)


def test_samples_whose_draw_is_the_identity_keep_exact_values() -> None:
    config = replace(AugmentConfig.none(), elastic_sigma_px=10.0, elastic_p=0.5)
    images, labels = torch.rand(16, 1, 128, 100, generator=_gen(30)), torch.randint(0, 4, (16, 128, 100), generator=_gen(31))
    out_images, out_labels, _ = augment(config, images, labels, _gen(32))
    kept = [torch.equal(a, b) for a, b in zip(out_images, images)]
    assert 0 < sum(kept) < len(kept)
    assert all(torch.equal(a, b) == k for a, b, k in zip(out_labels, labels, kept))


# --- the elastic field ------------------------------------------------------------------


@pytest.mark.parametrize("grid, sigma", [(3, 10.0), (3, 4.0), (5, 10.0)])
def test_displacement_at_the_coarse_grid_is_the_gaussian_draw(grid: int, sigma: float) -> None:
    """Coarse points sit on pixels (0, 16, 32 for 33 px and grid 3): there the field is the draw, std sigma."""
    size, draws = 33, 400
    field = elastic_displacement(draws, size, size, _gen(33), grid=grid, sigma_px=sigma)  # B x H x W x 2
    nodes = [round(k * (size - 1) / (grid - 1)) for k in range(grid)]
    at_nodes = field[:, nodes][:, :, nodes]  # B x g x g x 2
    drawn = torch.randn(draws, 2, grid, grid, generator=_gen(33)) * sigma
    assert torch.allclose(at_nodes.permute(0, 3, 1, 2), drawn, atol=1e-4)
    assert abs(float(at_nodes.std()) / sigma - 1) < 0.05
    assert abs(float(at_nodes.mean())) < 0.05 * sigma


def test_displacement_field_is_smooth() -> None:
    """Neighbouring pixels move almost alike (white noise of the same std would differ by ~1.1 sigma)."""
    sigma = 10.0
    field = elastic_displacement(100, 129, 129, _gen(34), grid=3, sigma_px=sigma)
    steps = torch.cat([(field[:, 1:] - field[:, :-1]).flatten(), (field[:, :, 1:] - field[:, :, :-1]).flatten()]).abs()
    assert float(steps.mean()) < 0.025 * sigma
    assert float(steps.max()) < 0.25 * sigma
    assert float(field.std()) > 0.6 * sigma  # and it does move


def test_elastic_grid_is_identity_plus_displacement() -> None:
    grid = elastic_grid(2, 21, 31, _gen(35), grid=3, sigma_px=10.0)
    displacement = elastic_displacement(2, 21, 31, _gen(35), grid=3, sigma_px=10.0)
    in_pixels = (grid - identity_grid(2, 21, 31)) * torch.tensor([15.0, 10.0])  # (W - 1) / 2, (H - 1) / 2
    assert grid.shape == (2, 21, 31, 2)
    assert torch.allclose(in_pixels, displacement, atol=1e-4)


# --- the affine part --------------------------------------------------------------------


@pytest.mark.parametrize("turns", [1, 2, 3])
@pytest.mark.parametrize("size", [8, 9, 64])
def test_rotation_by_right_angles_equals_rot90(turns: int, size: int) -> None:
    images = torch.rand(2, 3, size, size, generator=_gen(36))
    labels = torch.randint(0, 5, (2, size, size), generator=_gen(37))
    grid = sampling_grid(size, size, angle=torch.full((2,), turns * math.pi / 2))
    out_images, out_labels, _ = warp(images, grid, labels)
    assert torch.equal(out_labels, torch.rot90(labels, turns, (-2, -1)))
    assert torch.allclose(out_images, torch.rot90(images, turns, (-2, -1)), atol=1e-5)


@pytest.mark.parametrize("size", [(8, 8), (7, 12)])
def test_flips_and_half_turn_through_the_grid_equal_torch_flip(size: tuple[int, int]) -> None:
    height, width = size
    labels = torch.randint(0, 9, (4, height, width), generator=_gen(38))
    flip_x, flip_y = torch.tensor([False, True, False, True]), torch.tensor([False, False, True, True])
    _, by_flips, _ = warp(labels[:, None].float(), sampling_grid(height, width, flip_x=flip_x, flip_y=flip_y), labels)
    expected = torch.stack([labels[0], labels[1].flip(-1), labels[2].flip(-2), labels[3].flip(-2, -1)])
    assert torch.equal(by_flips, expected)
    _, by_turn, _ = warp(labels[:, None].float(), sampling_grid(height, width, angle=torch.full((4,), math.pi)), labels)
    assert torch.equal(by_turn, labels.flip(-2, -1))


def test_shift_moves_content_by_whole_pixels() -> None:
    labels = torch.randint(0, 9, (1, 12, 15), generator=_gen(39))
    _, out, _ = warp(labels[:, None].float(), sampling_grid(12, 15, shift=torch.tensor([[3.0, 2.0]])), labels)
    assert torch.equal(out[0, :-2, :-3], labels[0, 2:, 3:])  # output p reads input p + (dx, dy)


@pytest.mark.parametrize(
    "transform",
    [dict(angle=torch.tensor([math.pi / 4])), dict(shift=torch.tensor([[20.0, -13.0]])), dict(scale=torch.tensor([0.5]))],
    ids=["rotate-45", "shift", "zoom-out"],
)
def test_borders_reflect_instead_of_going_black(transform: dict) -> None:
    images, labels = torch.ones(1, 1, 32, 24), torch.ones(1, 32, 24, dtype=torch.long)
    out_images, out_labels, _ = warp(images, sampling_grid(32, 24, **transform), labels)
    assert torch.allclose(out_images, images) and torch.equal(out_labels, labels)


def _fitted_affine(config: AugmentConfig, draws: int = 200, size: int = 33) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample the map q = A p + t (centred pixels) the augmentation applied, fitted on the central 9 x 9 pixels."""
    images, labels = _coordinates(draws, size, size)
    out, _ = augment_batch(config, images, labels, _gen(48))
    centre, reach = size // 2, 4
    window = slice(centre - reach, centre + reach + 1)
    read = out[:, :, window, window].flatten(2).transpose(1, 2) - centre  # B x N x 2: where each output pixel read
    at = images[0, :, window, window].flatten(1).T - centre  # N x 2: the output pixels
    design = torch.cat([at, torch.ones(len(at), 1)], dim=1)  # N x 3
    solution = torch.linalg.lstsq(design.expand(draws, -1, -1), read).solution  # B x 3 x 2
    return solution[:, :2].transpose(1, 2), solution[:, 2]  # B x 2 x 2, B x 2


def test_rotation_draws_any_angle() -> None:
    matrix, shift = _fitted_affine(replace(AugmentConfig.none(), rotate=True))
    assert torch.allclose(matrix @ matrix.transpose(1, 2), torch.eye(2).expand_as(matrix), atol=1e-3)  # a rotation
    assert torch.allclose(torch.linalg.det(matrix), torch.ones(len(matrix)), atol=1e-3)
    angles = torch.atan2(matrix[:, 1, 0], matrix[:, 0, 0]) % (2 * math.pi)
    counts = torch.histc(angles, bins=8, min=0, max=2 * math.pi)
    assert bool((counts > 10).all())  # uniform over the circle: 25 expected per 45 degrees
    assert torch.allclose(shift, torch.zeros_like(shift), atol=1e-3)  # about the centre


def test_flips_draw_all_four() -> None:
    matrix, _ = _fitted_affine(replace(AugmentConfig.none(), flip=True))
    signs = {(round(float(m[0, 0])), round(float(m[1, 1]))) for m in matrix}
    assert signs == {(1, 1), (-1, 1), (1, -1), (-1, -1)}
    assert torch.allclose(matrix.abs(), torch.eye(2).expand_as(matrix), atol=1e-3)


def test_shifts_stay_in_range_and_fill_it() -> None:
    matrix, shift = _fitted_affine(replace(AugmentConfig.none(), shift_px=4.0))
    assert torch.allclose(matrix, torch.eye(2).expand_as(matrix), atol=1e-3)
    assert float(shift.abs().max()) <= 4.0 + 1e-3 and float(shift.abs().max()) > 3.5
    assert (shift < -1).any() and (shift > 1).any()


def test_scale_stays_in_range() -> None:
    matrix, _ = _fitted_affine(replace(AugmentConfig.none(), scale=(0.8, 1.25)))
    zoom = 1 / matrix[:, 0, 0]
    assert torch.allclose(matrix[:, 1, 1], matrix[:, 0, 0], atol=1e-3)
    assert float(zoom.min()) >= 0.8 - 1e-3 and float(zoom.max()) <= 1.25 + 1e-3
    assert float(zoom.min()) < 0.85 and float(zoom.max()) > 1.2


# --- grey values ------------------------------------------------------------------------


def _check_gamma(before: torch.Tensor, after: torch.Tensor, config: AugmentConfig) -> None:
    assert torch.allclose(after.amin(), before.amin(), atol=1e-6) and torch.allclose(after.amax(), before.amax(), atol=1e-6)
    order = before.flatten().argsort()
    assert bool((after.flatten()[order].diff() >= -1e-6).all())  # monotone


def _check_contrast(before: torch.Tensor, after: torch.Tensor, config: AugmentConfig) -> None:
    centred_before, centred_after = before - before.mean(), after - after.mean()
    factor = float((centred_after * centred_before).sum() / (centred_before**2).sum())
    assert 1 - config.contrast - 1e-5 <= factor <= 1 + config.contrast + 1e-5
    assert torch.allclose(centred_after, centred_before * factor, atol=1e-5)
    assert torch.allclose(after.mean(), before.mean(), atol=1e-5)


def _check_brightness(before: torch.Tensor, after: torch.Tensor, config: AugmentConfig) -> None:
    offset = after - before
    assert torch.allclose(offset, offset.flatten()[0].expand_as(offset), atol=1e-6)
    assert abs(float(offset.flatten()[0])) <= config.brightness + 1e-6


def _check_blur(before: torch.Tensor, after: torch.Tensor, config: AugmentConfig) -> None:
    assert float(after.var()) <= float(before.var())
    assert abs(float(after.mean() - before.mean())) < 0.02
    assert after.amin() >= before.amin() - 1e-6 and after.amax() <= before.amax() + 1e-6  # an average of neighbours


def _check_noise(before: torch.Tensor, after: torch.Tensor, config: AugmentConfig) -> None:
    noise = after - before
    assert float(noise.std()) <= 1.1 * config.noise_std
    assert abs(float(noise.mean())) < 0.2 * config.noise_std


GREY = {
    "gamma": (dict(gamma=(0.5, 2.0), gamma_p=1.0), _check_gamma),
    "contrast": (dict(contrast=0.3, contrast_p=1.0), _check_contrast),
    "brightness": (dict(brightness=0.2, brightness_p=1.0), _check_brightness),
    "blur": (dict(blur_sigma_px=2.0, blur_p=1.0), _check_blur),
    "noise": (dict(noise_std=0.1, noise_p=1.0), _check_noise),
}


@pytest.mark.parametrize("change", list(GREY))
def test_each_grey_value_change_does_what_it_says_and_leaves_labels(change: str) -> None:
    options, check = GREY[change]
    config = replace(AugmentConfig.none(), **options)
    images = torch.rand(6, 2, 24, 17, generator=_gen(40))
    labels, weights = torch.randint(0, 3, (6, 24, 17), generator=_gen(41)), torch.rand(6, 24, 17, generator=_gen(42))
    out_images, out_labels, out_weights = augment(config, images, labels, _gen(43), weights)
    assert out_labels is labels and out_weights is weights  # not even copied
    assert (out_images.shape, out_images.dtype) == (images.shape, images.dtype)
    for before, after in zip(images, out_images):
        assert not torch.equal(before, after)
        check(before, after, config)


@pytest.mark.parametrize("change", list(GREY))
@pytest.mark.parametrize("p", [0.0, 0.5])
def test_grey_value_probability_picks_samples(change: str, p: float) -> None:
    options, _ = GREY[change]
    config = replace(AugmentConfig.none(), **{k: (p if k.endswith("_p") else v) for k, v in options.items()})
    images = torch.rand(200, 1, 6, 6, generator=_gen(44))
    out_images, _ = augment_batch(config, images, torch.zeros(200, 6, 6, dtype=torch.long), _gen(45))
    unchanged = sum(torch.equal(a, b) for a, b in zip(out_images, images))  # samples not picked: exact values
    assert (unchanged == 200) if p == 0 else (70 <= unchanged <= 130)


def test_blur_with_sigma_zero_is_the_identity_and_tiny_images_work() -> None:
    images = torch.rand(2, 3, 9, 7, generator=_gen(46))
    assert torch.equal(gaussian_blur(images, torch.zeros(2)), images)
    tiny = torch.rand(2, 1, 2, 3, generator=_gen(47))
    out = gaussian_blur(tiny, torch.tensor([0.0, 5.0]))  # a kernel far wider than the image
    assert torch.equal(out[0], tiny[0]) and torch.allclose(out[1].mean(), tiny[1].mean(), atol=0.2)


def test_blur_of_a_point_is_a_normalised_symmetric_gaussian() -> None:
    image = torch.zeros(1, 1, 21, 21)
    image[0, 0, 10, 10] = 1.0
    out = gaussian_blur(image, torch.tensor([1.5]))[0, 0]
    assert torch.allclose(out.sum(), torch.tensor(1.0)) and torch.allclose(out, out.T) and torch.allclose(out, out.flip(0))
    ratio = float(out[10, 11] / out[10, 10])
    assert ratio == pytest.approx(math.exp(-1 / (2 * 1.5**2)), rel=1e-4)


# --- refused input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(elastic_p=1.5), "elastic_p"),
        (dict(noise_p=-0.1), "noise_p"),
        (dict(elastic_sigma_px=-1.0), "elastic_sigma_px"),
        (dict(elastic_grid=0), "elastic_grid"),
        (dict(contrast=1.0), "contrast"),
        (dict(scale=(1.2, 0.8)), "scale"),
        (dict(gamma=(0.0, 1.0)), "gamma"),
        (dict(shift_px=-2.0), "shift_px"),
    ],
)
def test_bad_config_refused_with_the_field_named(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AugmentConfig(**options)


@pytest.mark.parametrize(
    "images, labels, weights, match",
    [
        (torch.rand(2, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long), None, "images"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.long), torch.zeros(2, 8, 8, dtype=torch.long), None, "images"),
        (torch.rand(2, 1, 8, 8), torch.zeros(2, 8, 7, dtype=torch.long), None, "labels"),
        (torch.rand(2, 1, 8, 8), torch.zeros(2, 8, 8), None, "labels"),
        (torch.rand(2, 1, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long), torch.rand(1, 8, 8), "weights"),
        (torch.rand(2, 1, 1, 8), torch.zeros(2, 1, 8, dtype=torch.long), None, "2 pixels"),
        (torch.rand(1, 1, 8, 8), torch.full((1, 8, 8), 2**24), None, "2\\*\\*24"),
    ],
)
def test_bad_batches_refused(images, labels, weights, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        augment_batch("paper", images, labels, _gen(0), weights)


@pytest.mark.parametrize("preset", ["none", "paper", "strong"])
def test_config_survives_json(preset: str) -> None:
    config = getattr(AugmentConfig, preset)()
    again = AugmentConfig(**json.loads(json.dumps(asdict(config))))
    assert again == config and again.moves == config.moves
