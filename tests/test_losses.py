"""Losses: perfect logits give (near) zero, wrong ones more; a single logit is two classes."""

from __future__ import annotations

import pytest
import torch

from unetkit.errors import InputError
from unetkit.losses import LOSSES, class_probabilities, get_loss


def confident_logits(classes: torch.Tensor, num_classes: int, sign: float = 1.0) -> torch.Tensor:
    one_hot = torch.nn.functional.one_hot(classes, num_classes).permute(0, 3, 1, 2).float()
    return sign * 20 * (one_hot * 2 - 1)


@pytest.mark.parametrize("name", ["ce", "dice", "ce+dice"])
def test_right_logits_score_better_than_wrong_ones(name: str) -> None:
    classes = torch.randint(0, 3, (2, 8, 8))
    loss = get_loss(name)
    right = loss(confident_logits(classes, 3), classes)
    wrong = loss(confident_logits(classes, 3, -1.0), classes)
    assert right < 0.01 < wrong


def test_bce_uses_one_logit() -> None:
    classes = torch.randint(0, 2, (2, 8, 8))
    logits = (classes.float() * 2 - 1)[:, None] * 20
    assert LOSSES["bce"](logits, classes) < 1e-6
    assert LOSSES["bce"](-logits, classes) > 10
    with pytest.raises(ValueError):
        LOSSES["bce"](torch.zeros(2, 2, 8, 8), classes)


def test_single_logit_probabilities_are_two_classes() -> None:
    probs = class_probabilities(torch.zeros(1, 1, 2, 2))
    assert probs.shape == (1, 2, 2, 2)
    assert torch.allclose(probs, torch.full_like(probs, 0.5))


def test_unknown_loss_is_an_input_error() -> None:
    with pytest.raises(InputError, match="ce\\+dice"):
        get_loss("focal")
