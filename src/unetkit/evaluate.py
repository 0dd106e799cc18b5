"""Score predicted masks against true masks, per image and on average."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.data.dataset import read_pairs
from unetkit.data.io import write_atomic
from unetkit.data.labels import LabelEncoding
from unetkit.metrics import dice_per_class, iou_per_class, pixel_error


def score_masks(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Metrics of one image given as class maps."""
    return {
        "pixel_error": pixel_error(pred, truth),
        "dice": dice_per_class(pred, truth, num_classes),
        "iou": iou_per_class(pred, truth, num_classes),
    }


def evaluate_paths(pred: Path, labels: Path) -> dict[str, Any]:
    """Pair predictions with true masks by stem; classes are the values found in either."""
    pairs, palette = read_pairs(pred, labels)
    masks = [(p.image.name, p.image.array) for p in pairs] + [(p.label.name, p.label.array) for p in pairs]
    encoding = LabelEncoding.from_masks(masks, palette)
    per_image = {}
    for pair in pairs:
        predicted = encoding.to_classes(pair.image.array, pair.image.name)
        truth = encoding.to_classes(pair.label.array, pair.label.name)
        per_image[pair.name] = score_masks(predicted, truth, encoding.num_classes)
    mean = {
        "pixel_error": float(np.mean([s["pixel_error"] for s in per_image.values()])),
        "dice": np.mean([s["dice"] for s in per_image.values()], axis=0).tolist(),
        "iou": np.mean([s["iou"] for s in per_image.values()], axis=0).tolist(),
    }
    return {"classes": encoding.describe_values(), "per_image": per_image, "mean": mean}


def format_table(scores: dict[str, Any]) -> str:
    classes = scores["classes"]
    header = ["image", "pixel_error"] + [f"dice[{c}]" for c in classes] + [f"iou[{c}]" for c in classes]
    rows = [header]
    for name, s in list(scores["per_image"].items()) + [("mean", scores["mean"])]:
        rows.append([name, f"{s['pixel_error']:.4f}"] + [f"{v:.4f}" for v in s["dice"]] + [f"{v:.4f}" for v in s["iou"]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)


def write_json(scores: dict[str, Any], path: Path) -> None:
    text = json.dumps(scores, indent=2)
    write_atomic(Path(path), lambda tmp: Path(tmp).write_text(text + "\n"))
