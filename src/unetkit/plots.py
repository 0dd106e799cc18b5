"""Pictures for people: training curves and image | truth | prediction panels.

Figures are made as `matplotlib.figure.Figure` objects, not through pyplot: they need no screen and
leave the host's backend alone (`matplotlib.use("Agg")` here switched a notebook's inline plots off
for the rest of the session the first time `unetkit.train` was called).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from unetkit.data.io import write_atomic


def _import_figure() -> type:
    """matplotlib's Figure, imported without its two warnings about a HOME that is unset or read-only (it then
    keeps its cache in a temporary folder, which is all unetkit needs); the logger's level is put back."""
    logger = logging.getLogger("matplotlib")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from matplotlib.figure import Figure as imported
    finally:
        logger.setLevel(level)
    return imported


Figure = _import_figure()


def plot_curves(rows: list[dict[str, float]], path: Path) -> None:
    """Training loss and validation scores against epochs."""
    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(10, 4))
    ax_loss, ax_score = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], label="train loss")
    ax_loss.plot(epochs, [r["val_loss"] for r in rows], label="validation loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    ax_score.plot(epochs, [r["val_dice"] for r in rows], label="validation mean Dice")
    ax_score.plot(epochs, [1 - r["val_pixel_error"] for r in rows], label="validation pixel accuracy")
    ax_score.set_xlabel("epoch")
    ax_score.set_ylim(0, 1)
    ax_score.legend(loc="lower right")
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def plot_panel(image: np.ndarray, truth: np.ndarray, prediction: np.ndarray, path: Path, title: str = "") -> None:
    """Side by side: image | truth | prediction (class maps shown in grey levels)."""
    fig = Figure(figsize=(12, 4.3))
    axes = fig.subplots(1, 3)
    for ax, data, name in zip(axes, (image, truth, prediction), ("image", "truth", "prediction")):
        ax.imshow(data, cmap="gray", interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
