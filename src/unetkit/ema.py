"""Exponential moving average of a network's weights, for segmentation and diffusion training alike."""

from __future__ import annotations

from typing import Callable

import torch
from torch.optim.swa_utils import AveragedModel

WARMUP = 10  # the decay at update n is min(decay, (1 + n) / (WARMUP + n))


def warmed_up_decay(decay: float, updates: int) -> float:
    """The decay used for update number `updates` (0-based): small at first, `decay` after ~1 / (1 - decay) steps.

    Without the warm-up the average of a short run would still be mostly its random initial weights.
    """
    return min(decay, (1 + updates) / (WARMUP + updates))


def _update(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        if not averaged[0].is_floating_point():  # counters such as BatchNorm's num_batches_tracked: follow the model
            torch._foreach_copy_(averaged, current)
            return
        torch._foreach_lerp_(averaged, current, 1.0 - warmed_up_decay(decay, int(num_averaged)))

    return update


def make_ema(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of the weights and buffers (BatchNorm statistics); None when decay is 0.

    Small batches make the last weights noisy; their average over the last
    ~1 / (1 - decay) steps is the better model, and is what gets validated,
    sampled from and saved. Call `update_parameters(model)` after every step.
    """
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=_update(decay), use_buffers=True)
