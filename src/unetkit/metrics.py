"""Segmentation metrics on class maps (H x W integer arrays of class indices)."""

from __future__ import annotations

import numpy as np


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
