"""Segmentation metrics: class maps (H x W integer arrays of class indices) and the
ISBI 2012 boundary metrics (Rand and information scores on region labellings)."""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage
from skimage.metrics import adapted_rand_error, variation_of_information
from skimage.segmentation import expand_labels


def pixel_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of pixels whose class is wrong."""
    return float(np.mean(pred != truth))


def dice_per_class(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> list[float]:
    """Dice = 2|P & T| / (|P| + |T|) per class; 1.0 where the class is absent from both."""
    scores = []
    for k in range(num_classes):
        p, t = pred == k, truth == k
        total = int(p.sum()) + int(t.sum())
        scores.append(1.0 if total == 0 else 2.0 * int((p & t).sum()) / total)
    return scores


def iou_per_class(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> list[float]:
    """IoU = |P & T| / |P | T| per class; 1.0 where the class is absent from both."""
    scores = []
    for k in range(num_classes):
        p, t = pred == k, truth == k
        union = int((p | t).sum())
        scores.append(1.0 if union == 0 else int((p & t).sum()) / union)
    return scores


def area_bias_per_class(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> list[float]:
    """Predicted minus true share of the image per class: a systematic over- (+) or under-segmentation,
    e.g. boundaries drawn thicker than the annotator drew them, which Dice and IoU do not tell apart from noise."""
    pred_share = np.bincount(pred.ravel(), minlength=num_classes)[:num_classes] / pred.size
    true_share = np.bincount(truth.ravel(), minlength=num_classes)[:num_classes] / truth.size
    return [float(d) for d in pred_share - true_share]


# --------------------------------------------------------------------------------------
# Boundary (membrane) metrics of the ISBI 2012 challenge.
#
# ISBI labels: 255 = cell interior, 0 = membrane. Here an "interior mask" is an H x W
# bool array (True = interior) and a "region labelling" an H x W int array (0 = no region).
#
# Conventions (checked by hand-computed cases in tests/test_metrics.py):
# - Foreground restriction: only pixels whose TRUE label is > 0 (true interior) count,
#   as in the challenge; predicted label 0 is an ordinary segment there.
# - Rand: pair counts as in scikit-image, sum n_ij (n_ij - 1) (pairs of distinct pixels),
#   not the challenge's sum p_ij^2 with self-pairs; the two differ by O(1/N).
#   V_split = sum_ij n_ij(n_ij-1) / sum_k t_k(t_k-1)  (t = true segment sizes),
#   V_merge = sum_ij n_ij(n_ij-1) / sum_k s_k(s_k-1)  (s = predicted segment sizes).
#   rand_split = 1 - V_split and rand_merge = 1 - V_merge are errors (0 = perfect).
#   skimage's adapted_rand_error(true, pred) returns (error, "precision", "recall") with
#   "precision" = V_split and "recall" = V_merge, the reverse of what its docstring says.
# - VI: in bits (log2, scikit-image's unit). vi_split = H(S|T), vi_merge = H(T|S), with
#   S = prediction, T = truth; skimage's variation_of_information(true, pred) returns
#   [H(S|T), H(T|S)] = [split, merge] (its docstring: image1|image0, image0|image1).
# - A threshold t turns a probability of interior into the mask prob > t.
# --------------------------------------------------------------------------------------

DEFAULT_THRESHOLDS = np.arange(0.1, 1.0, 0.1)

# 4-connectivity: interior pixels that touch only diagonally across a one-pixel diagonal
# membrane are different cells; 8-connectivity would merge them.
_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def _check_mask(name: str, mask: np.ndarray) -> None:
    if mask.dtype != bool:
        raise TypeError(
            f"{name} must be a bool interior mask (True = interior), got dtype {mask.dtype}; "
            "for ISBI labels use labels == 255"
        )
    if mask.ndim != 2:
        raise ValueError(f"{name} must be H x W, got shape {mask.shape}")


def _check_same_shape(a_name: str, a: np.ndarray, b_name: str, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{a_name} shape {a.shape} differs from {b_name} shape {b.shape}")


def _check_labels(name: str, labels: np.ndarray) -> None:
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name} must be an integer label image, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{name} must be non-negative, got minimum {labels.min()}")


def interior_regions(interior: np.ndarray) -> np.ndarray:
    """Label the 4-connected components of an interior mask (boundary stays 0).

    This is how a TRUE interior mask becomes regions: its membrane pixels must stay 0 so
    the foreground restriction can ignore them.
    """
    _check_mask("interior", interior)
    labels, _ = ndimage.label(interior, structure=_FOUR_CONNECTED)
    return labels.astype(np.int32)


def regions_from_boundary(interior: np.ndarray) -> np.ndarray:
    """Turn a predicted interior mask (True = non-boundary) into int32 region labels.

    Connected components (4-connectivity) of the interior, then "border thinning": every
    region grows (nearest region in Euclidean distance) until the boundary pixels are
    absorbed, so the prediction is a partition comparable with the truth. Pixels stay 0
    only when there is no region at all (an all-boundary mask).
    """
    labels = interior_regions(interior)
    if labels.max() == 0:
        return labels
    grow = float(sum(labels.shape))  # farther than any pixel can be from a region
    return expand_labels(labels, distance=grow).astype(np.int32)


def _foreground_entropies(pred_regions: np.ndarray, true_regions: np.ndarray) -> tuple[float, float]:
    """Entropies H(S), H(T) in bits over the true interior (true_regions > 0)."""
    fg = true_regions > 0
    out = []
    for labels in (pred_regions[fg], true_regions[fg]):
        _, counts = np.unique(labels, return_counts=True)
        p = counts / counts.sum()
        out.append(float(-(p * np.log2(p)).sum()))
    return out[0], out[1]


def _check_pair(pred_regions: np.ndarray, true_regions: np.ndarray) -> None:
    _check_labels("pred_regions", pred_regions)
    _check_labels("true_regions", true_regions)
    _check_same_shape("pred_regions", pred_regions, "true_regions", true_regions)
    if not (true_regions > 0).any():
        raise ValueError("true_regions has no interior pixel (all 0): nothing to score")


def rand_scores(pred_regions: np.ndarray, true_regions: np.ndarray) -> dict[str, float]:
    """Foreground-restricted Rand scores: V_Rand (F-score of Rand split and merge).

    Returns v_rand, rand_error = 1 - v_rand (adapted Rand error), rand_split = 1 - V_split
    (a true cell cut in parts) and rand_merge = 1 - V_merge (true cells joined); see the
    conventions above. A truth with only single-pixel cells has no pairs: V_split = 1.
    """
    _check_pair(pred_regions, true_regions)
    error, v_split, v_merge = adapted_rand_error(true_regions, pred_regions, ignore_labels=(0,))
    # With no same-segment pairs skimage divides 0 by 0; nothing can be split (or merged).
    v_split = 1.0 if np.isnan(v_split) else float(v_split)
    v_merge = 1.0 if np.isnan(v_merge) else float(v_merge)
    v_rand = 1.0 - float(error) if not np.isnan(error) else 1.0
    return {
        "v_rand": v_rand,
        "rand_error": 1.0 - v_rand,
        "rand_split": 1.0 - v_split,
        "rand_merge": 1.0 - v_merge,
    }


def vi_scores(pred_regions: np.ndarray, true_regions: np.ndarray) -> dict[str, float]:
    """Foreground-restricted information scores, in bits.

    v_info = 2 I(S;T) / (H(S) + H(T)) (1.0 when both have one segment), info_error =
    1 - v_info, vi_split = H(S|T) (a true cell cut in parts), vi_merge = H(T|S) (true cells
    joined); S = prediction, T = truth.
    """
    _check_pair(pred_regions, true_regions)
    # Returns [H(image1|image0), H(image0|image1)], here [H(S|T), H(T|S)] = [split, merge].
    h_s_given_t, h_t_given_s = variation_of_information(
        true_regions, pred_regions, ignore_labels=(0,)
    )
    h_s, h_t = _foreground_entropies(pred_regions, true_regions)
    mutual = max(h_s - float(h_s_given_t), 0.0)  # clip rounding below zero
    v_info = 1.0 if h_s + h_t == 0 else 2.0 * mutual / (h_s + h_t)
    return {
        "v_info": v_info,
        "info_error": 1.0 - v_info,
        "vi_split": max(float(h_s_given_t), 0.0),  # clip -0.0 / rounding below zero
        "vi_merge": max(float(h_t_given_s), 0.0),
    }


def _check_prob(prob_interior: np.ndarray) -> None:
    if not np.issubdtype(prob_interior.dtype, np.floating):
        raise TypeError(f"prob_interior must be floating, got dtype {prob_interior.dtype}")
    if prob_interior.ndim != 2:
        raise ValueError(f"prob_interior must be H x W, got shape {prob_interior.shape}")
    if prob_interior.size and (prob_interior.min() < 0 or prob_interior.max() > 1):
        raise ValueError(
            f"prob_interior must lie in [0, 1], got [{prob_interior.min()}, {prob_interior.max()}]"
        )


def _f_score(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = int((pred & truth).sum())
    denom = int(pred.sum()) + int(truth.sum())
    return 1.0 if denom == 0 else 2.0 * tp / denom


def challenge_pixel_error(
    prob_interior: np.ndarray,
    true_interior: np.ndarray,
    thresholds: np.ndarray = DEFAULT_THRESHOLDS,
) -> float:
    """1 - best F-score of the interior (non-boundary) pixels over thresholds.

    The ISBI 2012 "pixel error" behind the U-Net paper's table: not the fraction of wrong
    pixels but 1 - max_t F1(prob > t, truth) with interior as the positive class.
    """
    _check_prob(prob_interior)
    _check_mask("true_interior", true_interior)
    _check_same_shape("prob_interior", prob_interior, "true_interior", true_interior)
    thresholds = np.asarray(thresholds, dtype=float)
    if thresholds.size == 0:
        raise ValueError("thresholds is empty")
    return 1.0 - max(_f_score(prob_interior > t, true_interior) for t in thresholds)


def _sweep(
    prob_interior: np.ndarray, true_regions: np.ndarray, thresholds: np.ndarray
) -> list[tuple[float, dict[str, float], dict[str, float]]]:
    """(threshold, rand_scores, vi_scores) for every threshold."""
    _check_prob(prob_interior)
    _check_same_shape("prob_interior", prob_interior, "true_regions", true_regions)
    thresholds = np.asarray(thresholds, dtype=float)
    if thresholds.size == 0:
        raise ValueError("thresholds is empty")
    rows = []
    for t in thresholds:
        pred_regions = regions_from_boundary(prob_interior > t)
        rows.append((float(t), rand_scores(pred_regions, true_regions), vi_scores(pred_regions, true_regions)))
    return rows


def _best_of_sweep(prob_interior: np.ndarray, true_regions: np.ndarray, thresholds: np.ndarray
                   ) -> tuple[float, dict[str, float], float, dict[str, float]]:
    """(threshold, Rand scores) of the best V_Rand and (threshold, information scores) of the best V_Info."""
    rows = _sweep(prob_interior, true_regions, thresholds)
    t_rand, rand, _ = max(rows, key=lambda row: row[1]["v_rand"])
    t_info, _, info = max(rows, key=lambda row: row[2]["v_info"])
    return t_rand, rand, t_info, info


def best_over_thresholds(
    prob_interior: np.ndarray,
    true_regions: np.ndarray,
    thresholds: np.ndarray = DEFAULT_THRESHOLDS,
) -> dict[str, float]:
    """Best V_Rand and best V_Info over thresholds, each with the threshold that gave it.

    The challenge's protocol for probability maps: threshold, thin borders, score, keep the
    best. Ties keep the lowest threshold. Keys: v_rand, v_rand_threshold, v_info,
    v_info_threshold.
    """
    t_rand, rand, t_info, info = _best_of_sweep(prob_interior, true_regions, thresholds)
    return {
        "v_rand": rand["v_rand"],
        "v_rand_threshold": t_rand,
        "v_info": info["v_info"],
        "v_info_threshold": t_info,
    }


def boundary_scores(
    pred_interior_or_prob: np.ndarray,
    true_interior: np.ndarray,
    thresholds: np.ndarray = DEFAULT_THRESHOLDS,
) -> dict[str, float]:
    """All ISBI 2012 scores for one image.

    A bool mask is scored as it is; a floating probability-of-interior map goes through
    the threshold sweep, the Rand keys coming from the threshold with the best V_Rand and
    the information keys from the one with the best V_Info. Keys: v_rand, rand_error,
    rand_split, rand_merge, v_info, info_error, vi_split, vi_merge, pixel_error (the
    challenge's 1 - best F-score) and, for probabilities, v_rand_threshold and
    v_info_threshold.
    """
    _check_mask("true_interior", true_interior)
    true_regions = interior_regions(true_interior)
    x = pred_interior_or_prob
    if x.dtype == bool:
        _check_same_shape("pred_interior", x, "true_interior", true_interior)
        pred_regions = regions_from_boundary(x)
        return {
            **rand_scores(pred_regions, true_regions),
            **vi_scores(pred_regions, true_regions),
            "pixel_error": 1.0 - _f_score(x, true_interior),
        }
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            f"pred_interior_or_prob must be a bool mask or floating probabilities, got dtype {x.dtype}"
        )
    t_rand, rand, t_info, info = _best_of_sweep(x, true_regions, thresholds)
    return {
        **rand,
        **info,
        "pixel_error": challenge_pixel_error(x, true_interior, thresholds),
        "v_rand_threshold": t_rand,
        "v_info_threshold": t_info,
    }


def boundary_scores_at_one_threshold(
    probs_interior: list[np.ndarray],
    true_interiors: list[np.ndarray],
    thresholds: np.ndarray = DEFAULT_THRESHOLDS,
) -> list[dict[str, float]]:
    """The challenge's scores of a set of probability maps, each metric at one threshold for the whole set.

    The challenge thresholds a submitted stack once: the threshold with the best mean V_Rand gives every image's
    Rand keys, the best mean V_Info the information keys, the best mean F-score the pixel error. (The best
    threshold of each image alone flatters the set: it knows each image's labels.) Ties keep the lowest threshold.
    Keys as `boundary_scores` for probabilities.
    """
    thresholds = np.asarray(thresholds, dtype=float)
    sweeps, f_scores = [], []
    for prob, truth in zip(probs_interior, true_interiors):
        _check_mask("true_interior", truth)
        sweeps.append(_sweep(prob, interior_regions(truth), thresholds))
        f_scores.append([_f_score(prob > t, truth) for t in thresholds])
    if not sweeps:
        return []

    def best(score: Callable[[int], float]) -> int:
        return max(range(len(thresholds)), key=lambda i: (score(i), -i))

    i_rand = best(lambda i: float(np.mean([rows[i][1]["v_rand"] for rows in sweeps])))
    i_info = best(lambda i: float(np.mean([rows[i][2]["v_info"] for rows in sweeps])))
    i_f = best(lambda i: float(np.mean([f[i] for f in f_scores])))
    return [{**rows[i_rand][1], **rows[i_info][2], "pixel_error": 1.0 - f[i_f],
             "v_rand_threshold": round(float(thresholds[i_rand]), 4), "v_info_threshold": round(float(thresholds[i_info]), 4),
             "pixel_error_threshold": round(float(thresholds[i_f]), 4)}
            for rows, f in zip(sweeps, f_scores)]


IOU_THRESHOLDS = np.round(np.arange(0.5, 1.0, 0.05), 2)  # the Data Science Bowl 2018's 0.5, 0.55, ..., 0.95


def object_matches(pred_objects: np.ndarray, true_objects: np.ndarray) -> dict[str, float | int | list[int]]:
    """Objects against objects (H x W ids, 0 background): how many true objects a predicted one covers at an
    intersection over union above each of IOU_THRESHOLDS. Above 0.5 a true object can match at most one predicted
    object, so no assignment is needed. Pixel scores cannot say whether touching nuclei came out as one object
    or two; this can. `matched` is the count per threshold (pooled over images by `object_scores`)."""
    _check_same_shape("pred", pred_objects, "truth", true_objects)
    pred, truth = pred_objects.ravel().astype(np.int64), true_objects.ravel().astype(np.int64)
    true_ids, true_area = np.unique(truth[truth != 0], return_counts=True)
    pred_ids, pred_area = np.unique(pred[pred != 0], return_counts=True)
    both = (truth != 0) & (pred != 0)
    overlaps, shared = np.unique(np.stack([truth[both], pred[both]]), axis=1, return_counts=True)
    union = true_area[np.searchsorted(true_ids, overlaps[0])] + pred_area[np.searchsorted(pred_ids, overlaps[1])] - shared
    iou = shared / np.maximum(union, 1)
    matched = [int((iou > threshold).sum()) for threshold in IOU_THRESHOLDS]
    above_half = iou > 0.5
    return {"true_objects": int(true_ids.size), "predicted_objects": int(pred_ids.size), "matched": matched,
            "matched_iou": float(iou[above_half].mean()) if above_half.any() else 0.0}


def object_scores(counts: list[dict]) -> dict[str, float | int]:
    """Precision, recall and F1 of the objects matched at IoU 0.5, and the mean over IOU_THRESHOLDS of
    matched / (matched + missed + extra) (the Data Science Bowl 2018's score), from one or more images' counts
    (object_matches), pooled: an image of 3 nuclei does not weigh as much as one of 300."""
    true = sum(c["true_objects"] for c in counts)
    pred = sum(c["predicted_objects"] for c in counts)
    matched = np.sum([c["matched"] for c in counts], axis=0)
    at_half = int(matched[0])
    per_threshold = [m / (true + pred - m) if true + pred - m else 1.0 for m in matched]
    weights = [c["matched"][0] for c in counts]
    return {"true_objects": true, "predicted_objects": pred, "matched": at_half,
            "precision": at_half / pred if pred else float(true == 0), "recall": at_half / true if true else float(pred == 0),
            "f1": 2 * at_half / (true + pred) if true + pred else 1.0, "ap_50_95": float(np.mean(per_threshold)),
            "matched_iou": float(np.average([c["matched_iou"] for c in counts], weights=weights)) if sum(weights) else 0.0}
