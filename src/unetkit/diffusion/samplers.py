"""From noise to images: the DDPM ancestral sampler, the DDIM sampler, classifier-free guidance.

A sampler takes a denoiser (x_t, t) -> epsilon or v, and a generator for its
noise: the same seed gives the same samples. Noise is drawn on the CPU and
moved, so a seed means the same on every device.
"""

from __future__ import annotations

import torch

from unetkit.diffusion.objectives import Denoiser
from unetkit.diffusion.schedule import NoiseSchedule, to_x0_and_eps
from unetkit.errors import InputError


def _noise(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=generator).to(device)


def _step_tensor(t: int, batch: int, device: torch.device) -> torch.Tensor:
    return torch.full((batch,), t, dtype=torch.long, device=device)


@torch.no_grad()
def ddpm_sample(
    denoiser: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...], generator: torch.Generator,
    prediction: str = "eps", device: torch.device | str = "cpu", clip: bool = True,
) -> torch.Tensor:
    """Ancestral sampling through all T steps with the posterior q(x_{t-1} | x_t, x_0) (Ho et al., eq. 6-7).

    `clip` keeps the predicted clean image in [-1, 1], the range the images were scaled to.
    """
    device = torch.device(device)
    alpha_bar = schedule.alpha_bar
    x = _noise(shape, generator, device)
    for t in reversed(range(schedule.steps)):
        ab = float(alpha_bar[t])
        ab_prev = float(alpha_bar[t - 1]) if t > 0 else 1.0
        beta = float(schedule.betas[t])
        t_batch = _step_tensor(t, shape[0], device)
        x0, _ = to_x0_and_eps(schedule, x, t_batch, denoiser(x, t_batch), prediction)
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
        mean = (beta * ab_prev**0.5 / (1 - ab)) * x0 + ((1 - ab_prev) * (1 - beta) ** 0.5 / (1 - ab)) * x
        if t > 0:
            variance = beta * (1 - ab_prev) / (1 - ab)
            x = mean + variance**0.5 * _noise(shape, generator, device)
        else:
            x = mean
    return x


def ddim_timesteps(total: int, steps: int) -> list[int]:
    """`steps` evenly spaced timesteps from 0 to total - 1, increasing; always ending at total - 1, where
    sampling starts from pure noise (one step is that step alone, not t = 0, which would return the noise)."""
    if not 1 <= steps <= total:
        raise InputError(f"--steps {steps}: must be between 1 and the model's {total} diffusion steps")
    if steps == 1:
        return [total - 1]
    return sorted({round(i * (total - 1) / (steps - 1)) for i in range(steps)})


@torch.no_grad()
def ddim_sample(
    denoiser: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...], generator: torch.Generator,
    steps: int = 50, eta: float = 0.0, prediction: str = "eps", device: torch.device | str = "cpu", clip: bool = True,
) -> torch.Tensor:
    """Song et al.'s DDIM: `steps` of the T steps; eta = 0 is deterministic given the starting noise,
    eta = 1 matches DDPM's variance on the chosen steps."""
    device = torch.device(device)
    alpha_bar = schedule.alpha_bar
    times = ddim_timesteps(schedule.steps, steps)
    x = _noise(shape, generator, device)
    for index in reversed(range(len(times))):
        t = times[index]
        ab = float(alpha_bar[t])
        ab_prev = float(alpha_bar[times[index - 1]]) if index > 0 else 1.0
        t_batch = _step_tensor(t, shape[0], device)
        x0, eps = to_x0_and_eps(schedule, x, t_batch, denoiser(x, t_batch), prediction)
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
            eps = (x - ab**0.5 * x0) / (1 - ab) ** 0.5  # the noise consistent with the clipped image
        sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)) ** 0.5
        x = ab_prev**0.5 * x0 + max(1 - ab_prev - sigma**2, 0.0) ** 0.5 * eps
        if sigma > 0 and index > 0:
            x = x + sigma * _noise(shape, generator, device)
    return x


def classifier_free_guidance(conditional: Denoiser, unconditional: Denoiser, scale: float) -> Denoiser:
    """Ho & Salimans: push the prediction from the unconditional one towards (scale > 1: past) the conditional one.

    scale 1 is the conditional model alone, 0 the unconditional one.
    """
    if scale == 1.0:
        return conditional

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        uncond = unconditional(x, t)
        return uncond + scale * (conditional(x, t) - uncond)

    return guided
