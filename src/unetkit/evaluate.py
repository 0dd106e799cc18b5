"""Score predicted masks against true masks, per image and on average.

Every labelling gets pixel error, Dice and IoU per class. A two-class labelling
with a boundary value (ISBI: 0 = membrane) also gets the ISBI 2012 challenge's
scores: regions are the connected non-boundary areas grown over the boundary
("border thinning"), then foreground-restricted adapted Rand error and V_Info
error with their split and merge parts, and the challenge's pixel error
(1 - F-score of the non-boundary pixels).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.data.dataset import read_pairs
from unetkit.data.io import write_atomic
from unetkit.data.labels import LabelEncoding
from unetkit.metrics import boundary_scores, dice_per_class, iou_per_class, pixel_error


def score_masks(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Metrics of one image given as class maps."""
    return {
        "pixel_error": pixel_error(pred, truth),
        "dice": dice_per_class(pred, truth, num_classes),
        "iou": iou_per_class(pred, truth, num_classes),
    }


CHALLENGE_KEYS = ("rand_error", "rand_split", "rand_merge", "info_error", "vi_split", "vi_merge", "challenge_pixel_error")


def evaluate_paths(pred: Path, labels: Path, boundary_value: int | None = 0) -> dict[str, Any]:
    """Pair predictions with true masks by stem; classes are the values found in either.

    With two classes one of which is `boundary_value`, the challenge scores are added.
    """
    pairs, palette = read_pairs(pred, labels)
    masks = [(p.image.name, p.image.array) for p in pairs] + [(p.label.name, p.label.array) for p in pairs]
    encoding = LabelEncoding.from_masks(masks, palette)
    boundary = None
    if boundary_value is not None and encoding.num_classes == 2 and boundary_value in encoding.values:
        boundary = encoding.values.index(boundary_value)
    per_image = {}
    for pair in pairs:
        predicted = encoding.to_classes(pair.image.array, pair.image.name)
        truth = encoding.to_classes(pair.label.array, pair.label.name)
        scores = score_masks(predicted, truth, encoding.num_classes)
        if boundary is not None and (truth != boundary).any():
            challenge = boundary_scores(predicted != boundary, truth != boundary)
            challenge["challenge_pixel_error"] = challenge.pop("pixel_error")
            scores.update({k: challenge[k] for k in CHALLENGE_KEYS})
        per_image[pair.name] = scores
    mean: dict[str, Any] = {
        "pixel_error": float(np.mean([s["pixel_error"] for s in per_image.values()])),
        "dice": np.mean([s["dice"] for s in per_image.values()], axis=0).tolist(),
        "iou": np.mean([s["iou"] for s in per_image.values()], axis=0).tolist(),
    }
    for key in CHALLENGE_KEYS:
        values = [s[key] for s in per_image.values() if key in s]
        if values:
            mean[key] = float(np.mean(values))
    return {"classes": encoding.describe_values(), "boundary_value": boundary_value if boundary is not None else None,
            "per_image": per_image, "mean": mean}


def format_table(scores: dict[str, Any]) -> str:
    classes = scores["classes"]
    extra = [k for k in CHALLENGE_KEYS if k in scores["mean"]]
    header = ["image", "pixel_error"] + [f"dice[{c}]" for c in classes] + [f"iou[{c}]" for c in classes] + extra
    rows = [header]
    for name, s in list(scores["per_image"].items()) + [("mean", scores["mean"])]:
        rows.append([name, f"{s['pixel_error']:.4f}"] + [f"{v:.4f}" for v in s["dice"]] + [f"{v:.4f}" for v in s["iou"]]
                    + [f"{s[k]:.4f}" if k in s else "-" for k in extra])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)


def write_json(scores: dict[str, Any], path: Path) -> None:
    text = json.dumps(scores, indent=2)
    write_atomic(Path(path), lambda tmp: Path(tmp).write_text(text + "\n"))
