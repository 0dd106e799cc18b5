"""Tests of the ISBI 2012 boundary metrics in unetkit.metrics."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import adapted_rand_error, variation_of_information

from unetkit.metrics import (
    best_over_thresholds,
    boundary_scores,
    challenge_pixel_error,
    interior_regions,
    rand_scores,
    regions_from_boundary,
    vi_scores,
)

LOG2_3 = np.log2(3.0)


# --- an independent oracle: contingency table by hand -------------------------------------


def contingency(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """n[i, j] = number of TRUE-interior pixels with true label i and predicted label j."""
    fg = true > 0
    t, p = true[fg], pred[fg]
    _, ti = np.unique(t, return_inverse=True)
    _, pi = np.unique(p, return_inverse=True)
    table = np.zeros((ti.max() + 1, pi.max() + 1))
    np.add.at(table, (ti, pi), 1)
    return table


def oracle_scores(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Rand (pairs of distinct pixels) and VI (bits) straight from the contingency table."""
    n = contingency(pred, true)
    t, s = n.sum(axis=1), n.sum(axis=0)  # true and predicted segment sizes
    pairs_ij = (n * (n - 1)).sum()
    pairs_t, pairs_s = (t * (t - 1)).sum(), (s * (s - 1)).sum()
    v_split = pairs_ij / pairs_t
    v_merge = pairs_ij / pairs_s
    v_rand = 2 * pairs_ij / (pairs_t + pairs_s)

    def entropy(counts: np.ndarray) -> float:
        p = counts[counts > 0] / counts.sum()
        return float(-(p * np.log2(p)).sum())

    h_joint, h_t, h_s = entropy(n.ravel()), entropy(t), entropy(s)
    mutual = h_s + h_t - h_joint
    return {
        "v_rand": v_rand,
        "rand_split": 1 - v_split,
        "rand_merge": 1 - v_merge,
        "vi_split": h_joint - h_t,  # H(S|T)
        "vi_merge": h_joint - h_s,  # H(T|S)
        "v_info": 1.0 if h_s + h_t == 0 else 2 * mutual / (h_s + h_t),
    }


# --- hand-computed cases --------------------------------------------------------------------

# Merge: true cells 1 and 2 predicted as one (label 1); cell 3 correct.
MERGE_TRUE = np.array([[1, 1, 2, 2, 3, 3]])
MERGE_PRED = np.array([[1, 1, 1, 1, 3, 3]])
# Split: the mirror image, one true cell (label 1, four pixels) predicted as two.
SPLIT_TRUE = MERGE_PRED
SPLIT_PRED = MERGE_TRUE

# Contingency (merge case), rows true 1,2,3, columns pred 1,3: n = [[2,0],[2,0],[0,2]].
# Pairs (ordered, distinct pixels): sum n(n-1) = 2+2+2 = 6
# true sizes 2,2,2: sum t(t-1) = 6; pred sizes 4,2: sum s(s-1) = 12+2 = 14
# V_split = 6/6 = 1, V_merge = 6/14 = 3/7, V_Rand = 2*6/(6+14) = 0.6
# H(T) = log2 3; H(S) = -(2/3 log2 2/3 + 1/3 log2 1/3) = log2 3 - 2/3
# H(S|T) = 0 (each true cell lies in one predicted segment)
# H(T|S) = 2/3 * 1 bit (the 4-pixel segment is half cell 1, half cell 2) + 1/3 * 0 = 2/3
# I = H(S) - H(S|T) = log2 3 - 2/3; V_Info = 2I / (H(S)+H(T)) = 2(log2 3 - 2/3)/(2 log2 3 - 2/3)
V_INFO_HAND = 2 * (LOG2_3 - 2 / 3) / (2 * LOG2_3 - 2 / 3)  # 0.73368...


def test_merge_hand_computed():
    r = rand_scores(MERGE_PRED, MERGE_TRUE)
    v = vi_scores(MERGE_PRED, MERGE_TRUE)
    assert r["v_rand"] == pytest.approx(0.6, abs=1e-12)
    assert r["rand_error"] == pytest.approx(0.4, abs=1e-12)
    assert r["rand_split"] == pytest.approx(0.0, abs=1e-12)
    assert r["rand_merge"] == pytest.approx(1 - 3 / 7, abs=1e-12)
    assert v["vi_split"] == pytest.approx(0.0, abs=1e-12)
    assert v["vi_merge"] == pytest.approx(2 / 3, abs=1e-12)
    assert v["v_info"] == pytest.approx(V_INFO_HAND, abs=1e-12)
    assert v["info_error"] == pytest.approx(1 - V_INFO_HAND, abs=1e-12)


def test_split_hand_computed():
    # Mirror of the merge case: contingency transposed, so split and merge swap roles.
    # V_split = 6/14 = 3/7, V_merge = 1, V_Rand = 0.6; H(S|T) = 2/3, H(T|S) = 0.
    r = rand_scores(SPLIT_PRED, SPLIT_TRUE)
    v = vi_scores(SPLIT_PRED, SPLIT_TRUE)
    assert r["v_rand"] == pytest.approx(0.6, abs=1e-12)
    assert r["rand_split"] == pytest.approx(1 - 3 / 7, abs=1e-12)
    assert r["rand_merge"] == pytest.approx(0.0, abs=1e-12)
    assert v["vi_split"] == pytest.approx(2 / 3, abs=1e-12)
    assert v["vi_merge"] == pytest.approx(0.0, abs=1e-12)
    assert v["v_info"] == pytest.approx(V_INFO_HAND, abs=1e-12)


def test_whole_merge_of_two_cells():
    # true [[1,1,2,2]], pred one segment: n = [[2],[2]]; sum n(n-1) = 4, sum t(t-1) = 4,
    # sum s(s-1) = 12 -> V_Rand = 8/16 = 0.5, V_merge = 1/3. H(S) = 0 so I = 0, V_Info = 0,
    # H(T|S) = H(T) = 1 bit.
    r = rand_scores(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 2, 2]]))
    v = vi_scores(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 2, 2]]))
    assert r["v_rand"] == pytest.approx(0.5)
    assert r["rand_merge"] == pytest.approx(2 / 3)
    assert r["rand_split"] == pytest.approx(0.0)
    assert v["v_info"] == pytest.approx(0.0, abs=1e-12)
    assert v["vi_merge"] == pytest.approx(1.0)
    assert v["vi_split"] == pytest.approx(0.0, abs=1e-12)


def test_skimage_return_order_as_documented_in_metrics():
    # adapted_rand_error(true, pred) returns ("precision", "recall") = (V_split, V_merge).
    _, prec, rec = adapted_rand_error(MERGE_TRUE, MERGE_PRED, ignore_labels=(0,))
    assert prec == pytest.approx(1.0) and rec == pytest.approx(3 / 7)
    # variation_of_information(true, pred) returns [H(S|T), H(T|S)] = [split, merge].
    split, merge = variation_of_information(MERGE_TRUE, MERGE_PRED, ignore_labels=(0,))
    assert merge == pytest.approx(2 / 3) and split == pytest.approx(0.0, abs=1e-12)


# --- identity, oracle agreement, foreground restriction -------------------------------------


def grid_interior(h: int = 17, w: int = 23, step: int = 5) -> np.ndarray:
    """Cells separated by one-pixel membranes every `step` pixels."""
    interior = np.ones((h, w), dtype=bool)
    interior[::step, :] = False
    interior[:, ::step] = False
    return interior


def test_identical_segmentations_have_zero_errors():
    true_interior = grid_interior()
    truth = interior_regions(true_interior)
    pred = regions_from_boundary(true_interior)  # thinned: membranes absorbed
    r, v = rand_scores(pred, truth), vi_scores(pred, truth)
    assert r["v_rand"] == pytest.approx(1.0) and v["v_info"] == pytest.approx(1.0)
    for key in ("rand_error", "rand_split", "rand_merge"):
        assert r[key] == pytest.approx(0.0, abs=1e-12), key
    for key in ("info_error", "vi_split", "vi_merge"):
        assert v[key] == pytest.approx(0.0, abs=1e-12), key


@pytest.mark.parametrize("seed", range(8))
def test_agrees_with_own_contingency_oracle(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(5, 30, size=2))
    truth = rng.integers(0, rng.integers(2, 8), size=shape)
    pred = rng.integers(0, rng.integers(2, 10), size=shape)
    truth[0, 0] = 1  # at least one interior pixel
    got = {**rand_scores(pred, truth), **vi_scores(pred, truth)}
    want = oracle_scores(pred, truth)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
    assert got["rand_error"] == pytest.approx(1 - want["v_rand"], abs=1e-9)
    assert got["info_error"] == pytest.approx(1 - want["v_info"], abs=1e-9)


def test_foreground_restriction_ignores_true_boundary_pixels():
    rng = np.random.default_rng(0)
    truth = interior_regions(grid_interior())
    pred = rng.integers(1, 6, size=truth.shape)
    changed = pred.copy()
    on_boundary = truth == 0
    changed[on_boundary] = rng.integers(0, 50, size=int(on_boundary.sum()))
    assert (changed != pred).any()
    assert rand_scores(changed, truth) == pytest.approx(rand_scores(pred, truth), abs=1e-12)
    assert vi_scores(changed, truth) == pytest.approx(vi_scores(pred, truth), abs=1e-12)


# --- border thinning --------------------------------------------------------------------------


def test_border_thinning_absorbs_boundary_and_keeps_cells_distinct():
    interior = grid_interior()
    components = interior_regions(interior)
    regions = regions_from_boundary(interior)
    assert regions.dtype == np.int32
    assert (regions > 0).all()  # every membrane pixel absorbed
    assert np.array_equal(regions[interior], components[interior])  # cells keep their labels
    assert len(np.unique(regions)) == components.max() == 20  # 4 x 5 cells, none merged


def test_diagonal_one_pixel_membrane_separates_cells():
    # Anti-diagonal membrane: (0,3) and (1,4) touch only diagonally -> 4-connectivity keeps
    # the two triangles apart.
    interior = ~np.fliplr(np.eye(5, dtype=bool))
    regions = regions_from_boundary(interior)
    assert len(np.unique(regions)) == 2 and regions[0, 3] != regions[1, 4]


def test_all_boundary_stays_zero():
    assert not regions_from_boundary(np.zeros((4, 6), dtype=bool)).any()


# --- challenge pixel error and threshold sweep -------------------------------------------------


def test_challenge_pixel_error_of_perfect_map_is_zero():
    true_interior = grid_interior()
    assert challenge_pixel_error(true_interior.astype(float), true_interior) == 0.0


def test_challenge_pixel_error_is_one_minus_best_f():
    # truth [T, T, F, F]; prob [0.9, 0.3, 0.6, 0.1]
    # t=0.5: pred [T,F,T,F]: tp 1, F = 2/(2+2) = 0.5;  t=0.2: pred [T,T,T,F]: F = 4/5
    # t=0.7: pred [T,F,F,F]: F = 2/3.  best 0.8 -> error 0.2
    truth = np.array([[True, True, False, False]])
    prob = np.array([[0.9, 0.3, 0.6, 0.1]])
    assert challenge_pixel_error(prob, truth, [0.2, 0.5, 0.7]) == pytest.approx(0.2)


def sweep_case() -> tuple[np.ndarray, np.ndarray]:
    """Two cells split by a membrane (col 5) whose middle is weak (0.55), and a faint line
    (0.65) across cell B: only t = 0.6 neither merges A with B nor splits B."""
    true_interior = np.ones((7, 11), dtype=bool)
    true_interior[:, 5] = False
    prob = np.where(true_interior, 0.9, 0.1)
    prob[2:5, 5] = 0.55  # t < 0.55 leaks A into B
    prob[:, 8] = 0.65  # t >= 0.65 cuts cell B in two
    return prob, true_interior


def test_threshold_sweep_picks_the_right_threshold():
    prob, true_interior = sweep_case()
    best = best_over_thresholds(prob, interior_regions(true_interior))
    assert best["v_rand"] == pytest.approx(1.0) and best["v_info"] == pytest.approx(1.0)
    assert best["v_rand_threshold"] == pytest.approx(0.6)
    assert best["v_info_threshold"] == pytest.approx(0.6)


def test_boundary_scores_mask_and_probability():
    prob, true_interior = sweep_case()
    exact = boundary_scores(true_interior, true_interior)
    assert exact["rand_error"] == pytest.approx(0.0) and exact["info_error"] == pytest.approx(0.0)
    assert exact["pixel_error"] == 0.0
    swept = boundary_scores(prob, true_interior)
    assert swept["rand_error"] == pytest.approx(0.0, abs=1e-12)
    assert swept["v_rand_threshold"] == pytest.approx(0.6)
    merged = boundary_scores(prob > 0.5, true_interior)  # leaky: A and B merged
    assert merged["rand_merge"] > 0 and merged["rand_split"] == pytest.approx(0.0)


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: regions_from_boundary(np.ones((3, 3), dtype=np.uint8)), TypeError),
        (lambda: regions_from_boundary(np.ones((3, 3, 3), dtype=bool)), ValueError),
        (lambda: rand_scores(np.ones((2, 2), int), np.ones((2, 3), int)), ValueError),
        (lambda: rand_scores(np.ones((2, 2), int), np.zeros((2, 2), int)), ValueError),
        (lambda: vi_scores(np.ones((2, 2), float), np.ones((2, 2), int)), TypeError),
        (lambda: challenge_pixel_error(np.full((2, 2), 1.5), np.ones((2, 2), bool)), ValueError),
        (lambda: challenge_pixel_error(np.ones((2, 2)), np.ones((2, 2), bool), []), ValueError),
        (lambda: boundary_scores(np.ones((2, 2), int), np.ones((2, 2), bool)), TypeError),
    ],
)
def test_invalid_input_raises(call, error):
    with pytest.raises(error):
        call()


def test_object_scores_count_a_fused_pair_as_one_match_and_two_misses() -> None:
    """Two touching true nuclei predicted as one object: neither is covered at IoU above 0.5 (each 0.5 exactly),
    so precision, recall and F1 fall where pixel scores would be perfect."""
    from unetkit.metrics import object_matches, object_scores

    truth = np.zeros((12, 12), np.uint16)
    truth[1:5, 1:5], truth[1:5, 5:9], truth[7:11, 7:11] = 1, 2, 3
    fused = np.zeros_like(truth)
    fused[1:5, 1:9], fused[7:11, 7:11] = 9, 4
    scores = object_scores([object_matches(fused, truth)])
    assert (scores["true_objects"], scores["predicted_objects"], scores["matched"]) == (3, 2, 1)
    assert scores["precision"] == pytest.approx(0.5) and scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(0.4) and scores["ap_50_95"] == pytest.approx(0.25)
    split = truth.copy() * 5  # other ids, the same objects
    assert object_scores([object_matches(split, truth)])["ap_50_95"] == 1.0
    shrunk = truth.copy()
    shrunk[1:5, 4] = 0  # one object a column short: IoU 12/16 = 0.75, matched up to the 0.7 threshold only
    assert object_matches(shrunk, truth)["matched"] == [3] * 5 + [2] * 5
    pooled = object_scores([object_matches(fused, truth), object_matches(split, truth)])
    assert (pooled["true_objects"], pooled["matched"]) == (6, 4)
    assert object_scores([object_matches(np.zeros_like(truth), np.zeros_like(truth))])["f1"] == 1.0  # empty on empty
