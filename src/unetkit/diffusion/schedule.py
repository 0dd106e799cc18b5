"""Noise schedules and the forward (noising) process of DDPM (Ho et al. 2020).

A schedule is the sequence beta_1..beta_T; everything else follows from
alpha_bar_t = prod_{s<=t} (1 - beta_s), the share of the clean image's variance
left at step t:  x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.
Timesteps are 0-based here: t = 0 is the first noising step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from unetkit.errors import InputError

SCHEDULES = ("linear", "cosine")


@dataclass(frozen=True)
class NoiseSchedule:
    """betas and the cumulative products derived from them (float64 for exact identities, cast on use)."""

    name: str
    betas: torch.Tensor  # T

    @property
    def steps(self) -> int:
        return len(self.betas)

    @property
    def alphas(self) -> torch.Tensor:
        return 1.0 - self.betas

    @property
    def alpha_bar(self) -> torch.Tensor:
        return torch.cumprod(self.alphas, dim=0)


def linear_schedule(steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, max_beta: float = 0.999) -> NoiseSchedule:
    """Ho et al.'s linear betas, scaled so that any T ends as noisy as their T = 1000; capped at `max_beta` like
    the cosine schedule, since for T < 50 the scaled betas would reach 1 and alpha_bar 0 (or below)."""
    scale = 1000 / steps
    betas = torch.linspace(scale * beta_start, scale * beta_end, steps, dtype=torch.float64).clamp(max=max_beta)
    return NoiseSchedule("linear", betas)


def cosine_schedule(steps: int = 1000, offset: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
    """Nichol & Dhariwal's cosine alpha_bar: destroys information more evenly than the linear one
    (the last linear steps are nearly pure noise already, which wastes them on small images)."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + offset) / (1 + offset) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)
    return NoiseSchedule("cosine", betas)


def make_schedule(name: str, steps: int = 1000) -> NoiseSchedule:
    if name == "linear":
        return linear_schedule(steps)
    if name == "cosine":
        return cosine_schedule(steps)
    raise InputError(f"--schedule {name}: unknown; choose one of {', '.join(SCHEDULES)}")


def _per_sample(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped B x 1 x 1 x 1 to broadcast over images like `like`."""
    return values.to(like.device)[t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def q_sample(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Sample x_t ~ q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) with the given noise."""
    alpha_bar = _per_sample(schedule.alpha_bar, t, x0)
    return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise


def v_target(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Salimans & Ho's velocity v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0."""
    alpha_bar = _per_sample(schedule.alpha_bar, t, x0)
    return alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0


def to_x0_and_eps(
    schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor, output: torch.Tensor, prediction: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean image and the noise implied by the network's output (an epsilon or a v prediction)."""
    alpha_bar = _per_sample(schedule.alpha_bar, t, x_t)
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    if prediction == "eps":
        eps = output
        x0 = (x_t - s * eps) / a
    elif prediction == "v":
        x0 = a * x_t - s * output
        eps = s * x_t + a * output
    else:
        raise InputError(f"--prediction {prediction}: unknown; choose eps or v")
    return x0, eps
