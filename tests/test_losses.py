"""Losses: perfect logits give (near) zero, wrong ones more; a single logit is two classes."""

from __future__ import annotations

import pytest
import torch

from unetkit.errors import InputError
from unetkit.losses import LOSSES, ce_loss, class_probabilities, get_loss, most_likely_class, weighted_ce_loss


def confident_logits(classes: torch.Tensor, num_classes: int, sign: float = 1.0) -> torch.Tensor:
    one_hot = torch.nn.functional.one_hot(classes, num_classes).permute(0, 3, 1, 2).float()
    return sign * 20 * (one_hot * 2 - 1)


@pytest.mark.parametrize("name", ["ce", "dice", "ce+dice", "weighted-ce"])
def test_right_logits_score_better_than_wrong_ones(name: str) -> None:
    classes = torch.randint(0, 3, (2, 8, 8))
    weights = torch.rand(2, 8, 8) * 10 + 0.5
    loss = get_loss(name)
    right = loss(confident_logits(classes, 3), classes, weights=weights)
    wrong = loss(confident_logits(classes, 3, -1.0), classes, weights=weights)
    assert right < 0.01 < wrong


@pytest.mark.parametrize("name", [name for name in LOSSES if name != "weighted-ce"])
def test_other_losses_ignore_weights(name: str) -> None:
    """The trainer passes weights=... to whichever loss is chosen; only weighted-ce may use them."""
    channels = 1 if name == "bce" else 3
    classes = torch.randint(0, 2, (2, 8, 8))
    logits = torch.randn(2, channels, 8, 8)
    assert torch.equal(LOSSES[name](logits, classes, weights=torch.rand(2, 8, 8)), LOSSES[name](logits, classes))


@pytest.mark.parametrize("value", [1.0, 0.5, 3.0, 12.5])
def test_weighted_ce_with_uniform_weights_is_scaled_ce(value: float) -> None:
    """Normalised by the pixel count: weights of 1 give plain CE exactly, a constant c gives c * CE."""
    classes = torch.randint(0, 3, (2, 7, 9))
    logits = torch.randn(2, 3, 7, 9)
    weighted = weighted_ce_loss(logits, classes, weights=torch.full((2, 7, 9), value))
    assert torch.allclose(weighted, value * ce_loss(logits, classes), rtol=1e-6)


def test_weighted_ce_is_the_mean_of_weighted_pixel_losses() -> None:
    classes = torch.tensor([[[0, 1]]])
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # 1 x 2 x 1 x 2
    log_p = torch.log_softmax(logits, dim=1)[0, :, 0]  # K x W
    weights = torch.tensor([[[3.0, 0.5]]])
    expected = -(3.0 * log_p[0, 0] + 0.5 * log_p[1, 1]) / 2
    assert torch.allclose(weighted_ce_loss(logits, classes, weights), expected)


@pytest.mark.parametrize("weight", [2.0, 10.0])
def test_weighted_ce_emphasises_high_weight_pixels(weight: float) -> None:
    """Equally wrong pixels: the gradient at a pixel of weight w is w times that at a pixel of weight 1."""
    classes = torch.zeros(1, 4, 5, dtype=torch.int64)
    logits = torch.zeros(1, 2, 4, 5, requires_grad=True)
    weights = torch.ones(1, 4, 5)
    weights[0, 2, 3] = weight
    weighted_ce_loss(logits, classes, weights).backward()
    grad = logits.grad[0].norm(dim=0)  # H x W
    assert grad[2, 3] == pytest.approx(weight * grad[0, 0].item())
    assert torch.allclose(grad[weights[0] == 1], grad[0, 0])


BAD_WEIGHTED_CE_CASES = {
    "no weights": (None, 3, "weights="),
    "weights of another shape": (torch.ones(2, 8, 7), 3, "must match"),
    "weights with a channel axis": (torch.ones(2, 1, 8, 8), 3, "must match"),
    "one logit": (torch.ones(2, 8, 8), 1, "K >= 2"),
}


@pytest.mark.parametrize("weights, channels, match", BAD_WEIGHTED_CE_CASES.values(), ids=BAD_WEIGHTED_CE_CASES.keys())
def test_weighted_ce_refuses_bad_calls(weights: torch.Tensor | None, channels: int, match: str) -> None:
    classes = torch.zeros(2, 8, 8, dtype=torch.int64)
    with pytest.raises(ValueError, match=match):
        get_loss("weighted-ce")(torch.zeros(2, channels, 8, 8), classes, weights=weights)


def test_weighted_ce_without_weights_keyword_raises() -> None:
    """The trainer calls loss_fn(logits, classes) when no weight map is in use: weighted-ce must not guess."""
    with pytest.raises(ValueError, match="weight map"):
        get_loss("weighted-ce")(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.int64))


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


@pytest.mark.parametrize("classes", [1, 2, 3, 5])
def test_the_most_likely_class_is_argmax_ties_going_to_the_first(classes: int) -> None:
    generator = torch.Generator().manual_seed(classes)
    # values on a coarse grid, so that many pixels tie between two or more classes
    probs = torch.randint(0, 4, (classes, 3, 17, 19), generator=generator).float() / 4
    assert torch.equal(most_likely_class(probs), probs.argmax(0))
    assert most_likely_class(probs).dtype == torch.int64 and most_likely_class(probs).shape == (3, 17, 19)
    if classes > 1:
        assert len(most_likely_class(probs).unique()) == classes  # every class wins somewhere: the test can fail
    probs.view(classes, -1)[:, ::7] = float("nan")  # NaN in every class at some pixels, in some classes at others
    probs.view(classes, -1)[classes // 2, ::5] = float("nan")
    assert torch.equal(most_likely_class(probs), probs.argmax(0))
