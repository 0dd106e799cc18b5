"""Segmentation losses, by name.

All take logits B x K x H x W (K = 1: one sigmoid logit for binary) and class
maps B x H x W (int64), and return a scalar.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F

from unetkit.errors import InputError

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def bce_loss(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on one logit; the labels are the classes scaled to {0, 1} (the tutorial's loss)."""
    if logits.shape[1] != 1:
        raise ValueError(f"bce needs one output channel, got {logits.shape[1]}")
    return F.binary_cross_entropy_with_logits(logits[:, 0].float(), classes.float())


def ce_loss(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy over K classes."""
    return F.cross_entropy(logits.float(), classes)


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """B x K x H x W probabilities; a single logit becomes two classes (1 - p, p)."""
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits.float())
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(logits.float(), dim=1)


def soft_dice_loss(logits: torch.Tensor, classes: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean over classes of the soft Dice, pooled over the batch (stable for classes absent in a patch)."""
    probs = class_probabilities(logits)
    one_hot = F.one_hot(classes, probs.shape[1]).permute(0, 3, 1, 2).to(probs)
    dims = (0, 2, 3)
    intersection = (probs * one_hot).sum(dims)
    total = probs.sum(dims) + one_hot.sum(dims)
    return 1 - ((2 * intersection + eps) / (total + eps)).mean()


def ce_dice_loss(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus soft Dice: CE for calibrated pixels, Dice against class imbalance (as nnU-Net)."""
    return ce_loss(logits, classes) + soft_dice_loss(logits, classes)


LOSSES: dict[str, Loss] = {"bce": bce_loss, "ce": ce_loss, "dice": soft_dice_loss, "ce+dice": ce_dice_loss}


def get_loss(name: str) -> Loss:
    if name not in LOSSES:
        raise InputError(f"--loss {name}: unknown; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]
