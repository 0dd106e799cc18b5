"""Border weight map (U-Net paper eq. 2): peaks in the gaps between cells, the paper's value on a straight gap, exact against brute force."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage

from unetkit.data.weightmap import border_weight_map, class_balance_weights

W0, SIGMA = 10.0, 5.0


def border_term(classes: np.ndarray, **kwargs: float) -> np.ndarray:
    """The w0 * exp(...) part: the map minus the class weights."""
    return border_weight_map(classes, 2, **kwargs) - class_balance_weights(classes, 2)


def two_rectangles(gap: int) -> tuple[np.ndarray, slice]:
    """80 x 90 background with two 30 x 12 cells side by side, `gap` background columns apart; returns the map and the gap's columns."""
    classes = np.zeros((80, 90), dtype=np.int64)
    left = 45 - 12 - gap // 2
    classes[25:55, left : left + 12] = 1
    classes[25:55, left + 12 + gap : left + 24 + gap] = 1
    return classes, slice(left + 12, left + 12 + gap)


def brute_force(classes: np.ndarray, background: int, w0: float, sigma: float) -> np.ndarray:
    """Eq. 2 with a full-image distance transform per cell (no cutoff), the oracle for the fast version."""
    cells, count = ndimage.label(classes != background, structure=ndimage.generate_binary_structure(2, 1))
    distances = [np.maximum(ndimage.distance_transform_edt(cells != i) - 0.5, 0) for i in range(1, count + 1)]
    distances += [np.full(classes.shape, np.inf)] * 2  # fewer than two cells: d = inf, border term 0
    d = np.sort(np.stack(distances), axis=0)
    return class_balance_weights(classes, int(classes.max()) + 1) + w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma**2))


@pytest.mark.parametrize("gap", [1, 2, 3, 5])
def test_two_cells_peak_in_the_gap_between_them(gap: int) -> None:
    classes, gap_columns = two_rectangles(gap)
    border = border_term(classes)
    in_gap = np.zeros_like(classes, dtype=bool)
    in_gap[25:55, gap_columns] = True
    peak = border.max()
    assert border[in_gap].max() == peak
    assert np.all(in_gap[border > peak - 1e-4])  # the cells' rims come next (d1 + d2 = gap + 1/2), not tied
    assert peak == pytest.approx(W0 * math.exp(-(gap**2) / (2 * SIGMA**2)), rel=1e-5)


def test_a_two_pixel_gap_weighs_almost_w0() -> None:
    classes, gap_columns = two_rectangles(2)
    assert border_term(classes)[25:55, gap_columns].min() > 0.9 * W0


def test_far_from_cells_the_weight_is_the_class_weight() -> None:
    classes, _ = two_rectangles(2)
    weights, class_weights = border_weight_map(classes, 2), class_balance_weights(classes, 2)
    for corner in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        assert weights[corner] == pytest.approx(class_weights[corner], abs=1e-6)


@pytest.mark.parametrize("gap", [1, 2, 3, 4, 7, 10])
def test_straight_gap_has_the_papers_value(gap: int) -> None:
    """Two bars over the full height: 1-D. Every gap pixel has d1 + d2 = g (distances to the cells' borders), the paper's w_c + w0 exp(-g^2 / 2 sigma^2)."""
    classes = np.zeros((24, 60), dtype=np.int64)
    classes[:, 10:25] = 1
    classes[:, 25 + gap : 40 + gap] = 1
    w_background = classes.size / (2 * np.count_nonzero(classes == 0))
    expected = w_background + W0 * math.exp(-((gap / 2 + gap / 2) ** 2) / (2 * SIGMA**2))
    weights = border_weight_map(classes, 2)
    assert weights[:, 25 : 25 + gap] == pytest.approx(np.full((24, gap), expected), rel=1e-5)
    # Within a pixel of the gap width either way: the centre-to-centre distance would give g + 1.
    assert W0 * math.exp(-((gap + 1) ** 2) / (2 * SIGMA**2)) < expected - w_background


def test_diagonal_membrane_separates_two_cells() -> None:
    """A one-pixel diagonal line leaves the cells on its sides touching at corners: 4-connectivity keeps them two cells."""
    rows, cols = np.indices((20, 20))
    classes = (rows != cols).astype(np.int64)
    border = border_term(classes)
    assert border[rows == cols] == pytest.approx(np.full(20, W0 * math.exp(-1 / (2 * SIGMA**2))), rel=1e-5)


NO_BORDER_CASES = {
    "one cell": np.pad(np.ones((6, 9), dtype=np.int64), ((5, 7), (4, 3))),
    "no cell": np.zeros((12, 13), dtype=np.int64),
    "all cell": np.ones((12, 13), dtype=np.int64),
    "one cell touching the edge": np.pad(np.ones((6, 9), dtype=np.int64), ((0, 7), (0, 3))),
}


@pytest.mark.parametrize("classes", NO_BORDER_CASES.values(), ids=NO_BORDER_CASES.keys())
def test_fewer_than_two_cells_give_no_border_term(classes: np.ndarray) -> None:
    assert np.array_equal(border_weight_map(classes, 2), class_balance_weights(classes, 2))


def random_map(seed: int, shape: tuple[int, int] = (37, 41), num_classes: int = 2) -> np.ndarray:
    """Blobby cells: smoothed noise thresholded, so there are many cells with narrow gaps."""
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    return np.digitize(smooth, np.quantile(smooth, np.linspace(0, 1, num_classes + 1)[1:-1])).astype(np.int64)


BRUTE_FORCE_CASES = {
    "paper defaults": dict(seed=0, background=0, w0=10.0, sigma=5.0),
    "small sigma: the cutoff crops": dict(seed=1, background=0, w0=10.0, sigma=1.0),
    "sigma 1.5, background 1": dict(seed=2, background=1, w0=5.0, sigma=1.5),
    "3 classes, background 2": dict(seed=3, background=2, w0=10.0, sigma=2.0, num_classes=3),
    "w0 = 0": dict(seed=4, background=0, w0=0.0, sigma=5.0),
}


@pytest.mark.parametrize("case", BRUTE_FORCE_CASES.values(), ids=BRUTE_FORCE_CASES.keys())
def test_matches_brute_force(case: dict) -> None:
    num_classes = case.get("num_classes", 2)
    classes = random_map(case["seed"], num_classes=num_classes)
    args = dict(background=case["background"], w0=case["w0"], sigma=case["sigma"])
    expected = brute_force(classes, **args)
    weights = border_weight_map(classes, num_classes, **args)
    assert weights.dtype == np.float32 and weights.shape == classes.shape
    np.testing.assert_allclose(weights, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("flip", [np.fliplr, np.flipud, np.transpose, lambda a: np.rot90(a, 1)], ids=["lr", "ud", "transpose", "rot90"])
def test_mirrored_input_gives_the_mirrored_map(flip: Callable[[np.ndarray], np.ndarray]) -> None:
    classes = random_map(5)
    np.testing.assert_allclose(border_weight_map(np.ascontiguousarray(flip(classes)), 2), flip(border_weight_map(classes, 2)), atol=1e-6)


def test_background_index_picks_the_class_that_separates_cells() -> None:
    classes = random_map(6)
    np.testing.assert_array_equal(border_weight_map(classes, 2, background=0), border_weight_map(1 - classes, 2, background=1))


@settings(max_examples=40, deadline=None)
@given(classes=hnp.arrays(np.int64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24), elements=st.integers(0, 2)))
def test_weights_are_at_least_the_class_weights_and_at_most_w0_more(classes: np.ndarray) -> None:
    weights, class_weights = border_weight_map(classes, 3), class_balance_weights(classes, 3)
    assert np.all(np.isfinite(weights))
    assert np.all(weights >= class_weights)
    assert np.all(weights <= class_weights + W0 + 1e-5)


CLASS_WEIGHT_CASES = {
    # name: (classes, num_classes, weight of each class present)
    "1/4 background": (np.array([[0, 1], [1, 1]]), 2, {0: 2.0, 1: 2 / 3}),
    "balanced": (np.array([[0, 1], [1, 0]]), 2, {0: 1.0, 1: 1.0}),
    "one class": (np.zeros((3, 5), dtype=np.uint8), 2, {0: 1.0}),
    "class 1 of 3 absent": (np.array([[0, 0, 0, 2]]), 3, {0: 2 / 3, 2: 2.0}),
}


@pytest.mark.parametrize("classes, num_classes, expected", CLASS_WEIGHT_CASES.values(), ids=CLASS_WEIGHT_CASES.keys())
def test_class_weights_are_inverse_frequency_with_mean_one(classes: np.ndarray, num_classes: int, expected: dict) -> None:
    weights = class_balance_weights(classes, num_classes)
    assert weights.dtype == np.float32 and weights.shape == classes.shape
    assert weights.mean() == pytest.approx(1.0)
    for k, value in expected.items():
        assert weights[classes == k] == pytest.approx(np.full(np.count_nonzero(classes == k), value))


GOOD = np.zeros((4, 5), dtype=np.int64)
INVALID_CASES = {
    "list": ([[0, 1]], {}, "numpy array"),
    "1-D": (np.zeros(5, dtype=np.int64), {}, "2-D"),
    "3-D": (np.zeros((2, 4, 5), dtype=np.int64), {}, "2-D"),
    "float": (GOOD.astype(np.float32), {}, "integer"),
    "bool": (GOOD.astype(bool), {}, "integer"),
    "empty": (np.zeros((0, 5), dtype=np.int64), {}, "empty"),
    "class too big": (GOOD + 2, {}, "0..1"),
    "negative class": (GOOD - 1, {}, "0..1"),
    "num_classes 0": (GOOD, {"num_classes": 0}, "num_classes"),
    "background out of range": (GOOD, {"background": 2}, "background"),
    "sigma 0": (GOOD, {"sigma": 0.0}, "sigma"),
    "sigma nan": (GOOD, {"sigma": float("nan")}, "sigma"),
    "negative w0": (GOOD, {"w0": -1.0}, "w0"),
    "infinite w0": (GOOD, {"w0": float("inf")}, "w0"),
}


@pytest.mark.parametrize("classes, kwargs, match", INVALID_CASES.values(), ids=INVALID_CASES.keys())
def test_invalid_input_is_named(classes: object, kwargs: dict, match: str) -> None:
    kwargs = {"num_classes": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        border_weight_map(classes, **kwargs)
