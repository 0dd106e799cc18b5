"""Watershed regions: a gap in a membrane does not merge cells, small basins do not split them."""

from __future__ import annotations

import numpy as np
import pytest

from unetkit.instances import object_regions, watershed_regions
from unetkit.metrics import interior_regions, rand_scores, regions_from_boundary


def two_cells_with_a_gap() -> tuple[np.ndarray, np.ndarray]:
    """Boundary probability of two 30 x 30 cells split by a vertical membrane that has a 3-pixel gap."""
    truth = np.ones((30, 61), dtype=bool)
    truth[:, 30] = False
    prob = np.where(truth, 0.05, 0.95)
    prob[14:17, 30] = 0.45  # the membrane is faint here: above the seed level, below 0.5
    return prob, truth


def test_watershed_keeps_cells_apart_where_thresholding_merges_them() -> None:
    prob, truth = two_cells_with_a_gap()
    true_regions = interior_regions(truth)
    thresholded = regions_from_boundary(prob < 0.5)
    flooded = watershed_regions(prob)
    assert len(np.unique(thresholded)) == 1  # the gap joins the two cells
    assert rand_scores(thresholded, true_regions)["rand_merge"] > 0.4
    assert len(np.unique(flooded)) == 2
    assert rand_scores(flooded, true_regions)["rand_error"] == pytest.approx(0)


def test_small_basins_do_not_split_a_cell() -> None:
    prob = np.full((40, 40), 0.2)
    prob[0, :] = prob[-1, :] = prob[:, 0] = prob[:, -1] = 0.9
    prob[20, 5:35] = 0.4  # a faint ridge inside the cell
    prob[23:29, 23:29] = 0.5  # a ring above the seed level...
    prob[25:27, 25:27] = 0.0  # ...around a tiny dark spot: an isolated basin of 4 pixels
    regions = watershed_regions(prob, seed_threshold=0.3, min_seed_size=25)
    assert len(np.unique(regions)) == 1
    assert regions.min() == 1  # every pixel, boundary included, belongs to a region
    assert len(np.unique(watershed_regions(prob, seed_threshold=0.3, min_seed_size=1))) == 2  # without the size rule it splits


def test_no_seed_gives_no_regions_and_bad_input_is_refused() -> None:
    assert not watershed_regions(np.ones((5, 5))).any()
    with pytest.raises(ValueError):
        watershed_regions(np.full((3, 3), np.nan))


def test_a_weak_model_that_is_never_sure_still_gets_the_cells_of_its_mask() -> None:
    """Boundary probability 0.30-0.70 everywhere: no basin under the seed level, yet the mask has two cells."""
    prob, truth = two_cells_with_a_gap()
    prob = np.where(truth, 0.35, 0.65)
    regions = watershed_regions(prob)
    assert len(np.unique(regions)) == 2 and regions.min() == 1
    assert rand_scores(regions, interior_regions(truth))["rand_error"] == pytest.approx(0)


def test_objects_on_a_background_keep_it_at_zero_and_no_object_is_lost() -> None:
    """Nuclei on black: flooded as cells, one label took the background and a nucleus."""
    background = np.full((40, 40), 0.95, dtype=np.float32)
    background[5:15, 5:15] = 0.05  # a confident nucleus
    background[5:15, 16:26] = 0.1  # touching it across a less sure ridge: split where the floods meet
    background[5:15, 15] = 0.4
    background[30:32, 30:32] = 0.4  # a small, unsure object: no seed, still an object
    regions = object_regions(background)
    assert regions[background >= 0.5].max() == 0 and (regions[background < 0.5] > 0).all()
    assert regions[10, 10] != regions[10, 20] and regions[31, 31] not in (0, regions[10, 10], regions[10, 20])
    assert len(np.unique(regions)) == 4
