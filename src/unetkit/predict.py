"""Prediction outside the network: sliding windows, Gaussian blending, test-time augmentation.

The network only ever sees tiles; this module decides where the tiles go, how
their outputs are blended (in fp32), and how flips/rotations are averaged.
"""

from __future__ import annotations

import math

import torch

from unetkit.losses import class_probabilities


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of windows of size `tile` covering [0, length) with at least `overlap` overlap."""
    if length <= tile:
        return [0]
    stride = max(1, int(tile * (1 - overlap)))
    count = math.ceil((length - tile) / stride) + 1
    # spread the windows evenly so the last one ends exactly at the border
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def gaussian_window(height: int, width: int, sigma_scale: float = 0.125) -> torch.Tensor:
    """H x W weights peaking at the centre: tile borders, where context is poorest, count least."""

    def axis(n: int) -> torch.Tensor:
        x = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        return torch.exp(-0.5 * (x / max(n * sigma_scale, 1e-3)) ** 2)

    window = axis(height)[:, None] * axis(width)[None, :]
    return (window / window.max()).clamp_min(1e-3)


_DIHEDRAL = [(turns, flip) for flip in (False, True) for turns in range(4)]


def _apply(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, turns, (-2, -1))
    return x.flip(-1) if flip else x


def _undo(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    x = x.flip(-1) if flip else x
    return torch.rot90(x, -turns, (-2, -1))


def _tile_probabilities(model: torch.nn.Module, tile: torch.Tensor, tta: bool) -> torch.Tensor:
    """1 x C x h x w -> 1 x K x h x w probabilities, averaged over the 8 flips/rotations with TTA."""
    if not tta:
        return class_probabilities(model(tile))
    total = None
    for turns, flip in _DIHEDRAL:
        probs = _undo(class_probabilities(model(_apply(tile, turns, flip))), turns, flip)
        total = probs if total is None else total + probs
    return total / len(_DIHEDRAL)


@torch.no_grad()
def predict_probabilities(
    model: torch.nn.Module,
    image: torch.Tensor,
    tile: int = 512,
    overlap: float = 0.25,
    tta: bool = False,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """C x H x W normalised image -> K x H x W class probabilities (fp32, on the CPU).

    Images up to `tile` on both sides go through in one pass; larger ones in
    overlapping windows blended with Gaussian weights.
    """
    model.eval()
    _, height, width = image.shape
    tile_h, tile_w = min(tile, height), min(tile, width)
    window = gaussian_window(tile_h, tile_w)
    total: torch.Tensor | None = None
    weight = torch.zeros(height, width)
    for top in tile_starts(height, tile_h, overlap):
        for left in tile_starts(width, tile_w, overlap):
            patch = image[None, :, top : top + tile_h, left : left + tile_w].to(device)
            probs = _tile_probabilities(model, patch, tta)[0].float().cpu()  # K x h x w
            if total is None:
                total = torch.zeros(probs.shape[0], height, width)
            total[:, top : top + tile_h, left : left + tile_w] += probs * window
            weight[top : top + tile_h, left : left + tile_w] += window
    assert total is not None
    return total / weight
