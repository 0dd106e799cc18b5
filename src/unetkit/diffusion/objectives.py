"""What the denoiser learns: the noise added (epsilon, Ho et al.) or the velocity v (Salimans & Ho).

The segmentation U-Net learns a class per pixel; the same U-Net here learns to
undo one step of noise. Both targets are regressed with the mean squared error;
v keeps the target's scale the same at every noise level, epsilon is the DDPM
paper's choice.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F

from unetkit.diffusion.schedule import NoiseSchedule, q_sample, v_target
from unetkit.errors import InputError

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t) -> epsilon or v, same shape as x_t
PREDICTIONS = ("eps", "v")


def diffusion_loss(
    denoiser: Denoiser, schedule: NoiseSchedule, x0: torch.Tensor, generator: torch.Generator, prediction: str = "eps"
) -> torch.Tensor:
    """MSE between the denoiser's output and its target at a random step per sample.

    Timesteps and noise come from `generator` on the CPU, so a seed fixes them on any device.
    """
    if prediction not in PREDICTIONS:
        raise InputError(f"--prediction {prediction}: unknown; choose one of {', '.join(PREDICTIONS)}")
    t = torch.randint(0, schedule.steps, (x0.shape[0],), generator=generator).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    x_t = q_sample(schedule, x0, t, noise)
    target = noise if prediction == "eps" else v_target(schedule, x0, t, noise)
    return F.mse_loss(denoiser(x_t, t).float(), target.float())
