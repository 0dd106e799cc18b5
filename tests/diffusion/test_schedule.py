"""Noise schedules and the forward process: the identities DDPM rests on."""

import pytest
import torch

from unetkit.diffusion.schedule import cosine_schedule, linear_schedule, make_schedule, q_sample, to_x0_and_eps, v_target
from unetkit.errors import InputError


@pytest.mark.parametrize("schedule", [linear_schedule(1000), cosine_schedule(1000), linear_schedule(50), cosine_schedule(50)])
def test_alpha_bar_falls_from_almost_one_to_almost_zero(schedule):
    alpha_bar = schedule.alpha_bar
    assert (alpha_bar[1:] < alpha_bar[:-1]).all()
    assert alpha_bar[0] > 0.99
    assert alpha_bar[-1] < 0.01
    assert ((schedule.betas > 0) & (schedule.betas < 1)).all()


def test_cosine_keeps_more_signal_midway_than_linear():
    """Nichol & Dhariwal's point: the linear schedule destroys the image too early."""
    assert cosine_schedule(1000).alpha_bar[500] > 2 * linear_schedule(1000).alpha_bar[500]


@pytest.mark.parametrize("t", [0, 100, 500, 999])
def test_q_sample_has_the_closed_form_mean_and_variance(t):
    schedule = cosine_schedule(1000)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.full((200_000, 1, 1, 1), 0.7)
    noise = torch.randn(x0.shape, generator=generator)
    x_t = q_sample(schedule, x0, torch.full((len(x0),), t), noise)
    alpha_bar = float(schedule.alpha_bar[t])
    assert float(x_t.mean()) == pytest.approx(alpha_bar**0.5 * 0.7, abs=0.01)
    assert float(x_t.var()) == pytest.approx(1 - alpha_bar, rel=0.02, abs=1e-4)


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_the_true_target_gives_back_the_clean_image_and_the_noise(prediction):
    schedule = linear_schedule(100)
    generator = torch.Generator().manual_seed(1)
    x0, noise = torch.rand(4, 1, 8, 8, generator=generator) * 2 - 1, torch.randn(4, 1, 8, 8, generator=generator)
    t = torch.tensor([0, 10, 50, 99])
    x_t = q_sample(schedule, x0, t, noise)
    output = noise if prediction == "eps" else v_target(schedule, x0, t, noise)
    x0_back, eps_back = to_x0_and_eps(schedule, x_t, t, output, prediction)
    torch.testing.assert_close(eps_back, noise, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(x0_back[:3], x0[:3], atol=1e-3, rtol=1e-3)  # at t = 99 x0 is amplified noise


def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(InputError, match="--schedule"):
        make_schedule("quadratic")
