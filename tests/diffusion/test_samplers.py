"""DDPM and DDIM sampling, guidance: determinism and sanity on tiny models."""

import pytest
import torch

from unetkit.diffusion.samplers import classifier_free_guidance, ddim_sample, ddim_timesteps, ddpm_sample
from unetkit.diffusion.schedule import cosine_schedule, linear_schedule
from unetkit.errors import InputError
from unetkit.models.diffusion_unet import DiffusionUNet, DiffusionUNetConfig


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = DiffusionUNet(DiffusionUNetConfig(base_width=8, width_multipliers=(1, 2), attention_levels=(1,), heads=2,
                                              groups=4, label_classes=2)).eval()
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.05)
    return model


def denoiser(model, labels=None):
    return lambda x, t: model(x, t, labels)


def test_ddim_with_eta_zero_and_a_seed_is_deterministic(model):
    schedule = cosine_schedule(100)
    first = ddim_sample(denoiser(model), schedule, (2, 1, 8, 8), torch.Generator().manual_seed(5), steps=10)
    second = ddim_sample(denoiser(model), schedule, (2, 1, 8, 8), torch.Generator().manual_seed(5), steps=10)
    other = ddim_sample(denoiser(model), schedule, (2, 1, 8, 8), torch.Generator().manual_seed(6), steps=10)
    assert torch.equal(first, second)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "ddim-eta1", "guided", "v"])
def test_samplers_return_finite_images_in_range(model, sampler):
    schedule = linear_schedule(50)
    generator = torch.Generator().manual_seed(0)
    shape = (3, 1, 12, 12)
    if sampler == "ddpm":
        out = ddpm_sample(denoiser(model), schedule, shape, generator)
    elif sampler == "ddim-eta1":
        out = ddim_sample(denoiser(model), schedule, shape, generator, steps=20, eta=1.0)
    elif sampler == "guided":
        labels = torch.randint(0, 2, (3, 12, 12))
        guided = classifier_free_guidance(denoiser(model, labels), denoiser(model), 3.0)
        out = ddim_sample(guided, schedule, shape, generator, steps=20)
    elif sampler == "v":
        out = ddim_sample(denoiser(model), schedule, shape, generator, steps=20, prediction="v")
    else:
        out = ddim_sample(denoiser(model), schedule, shape, generator, steps=20)
    assert out.shape == shape
    assert torch.isfinite(out).all()
    assert out.abs().max() <= 1.0 + 1e-5  # the last step returns the (clipped) clean image


def test_ddim_on_an_exact_denoiser_recovers_the_data_point():
    """If the denoiser knows the single training image, DDIM (eta 0) must land on it from any noise."""
    schedule = cosine_schedule(200)
    target = torch.linspace(-0.8, 0.8, 64).view(1, 1, 8, 8)

    def exact(x_t, t):
        alpha_bar = schedule.alpha_bar[t].float().view(-1, 1, 1, 1)
        return (x_t - alpha_bar.sqrt() * target) / (1 - alpha_bar).sqrt()

    out = ddim_sample(exact, schedule, (2, 1, 8, 8), torch.Generator().manual_seed(0), steps=25)
    torch.testing.assert_close(out, target.expand(2, -1, -1, -1), atol=1e-4, rtol=0)
    out = ddpm_sample(exact, schedule, (2, 1, 8, 8), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, target.expand(2, -1, -1, -1), atol=1e-3, rtol=0)


def test_one_ddim_step_denoises_instead_of_handing_back_the_noise():
    """Sampling starts at t = T - 1 whatever the step count. With the Bayes-optimal denoiser of N(0, 0.3^2) data,
    one step from pure noise lands near the data's mean; started at t = 0 it would return the noise itself."""
    schedule, spread = cosine_schedule(200), 0.3

    def optimal(x_t, t):
        alpha_bar = schedule.alpha_bar[t].float().view(-1, 1, 1, 1)
        x0 = alpha_bar.sqrt() * spread**2 * x_t / (alpha_bar * spread**2 + 1 - alpha_bar)
        return (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()

    out = ddim_sample(optimal, schedule, (4, 1, 16, 16), torch.Generator().manual_seed(0), steps=1)
    assert out.std() < 0.1
    many = ddim_sample(optimal, schedule, (4, 1, 16, 16), torch.Generator().manual_seed(0), steps=200)
    assert abs(many.std() - spread) < 0.03  # all the steps draw the data's spread


def test_short_linear_schedules_keep_every_beta_below_one():
    """Betas are scaled by 1000 / T; for T < 50 they would reach 1 (alpha_bar 0, a division by zero) without a cap."""
    for steps in (10, 20, 49):
        schedule = linear_schedule(steps)
        assert schedule.betas.max() < 1 and (schedule.alpha_bar > 0).all()


def test_guidance_scale_one_is_the_conditional_model_and_zero_the_unconditional():
    cond, uncond = (lambda x, t: x + 1), (lambda x, t: x - 1)
    x, t = torch.zeros(1, 1, 2, 2), torch.zeros(1, dtype=torch.long)
    assert torch.equal(classifier_free_guidance(cond, uncond, 1.0)(x, t), x + 1)
    assert torch.equal(classifier_free_guidance(cond, uncond, 0.0)(x, t), x - 1)
    assert torch.equal(classifier_free_guidance(cond, uncond, 2.0)(x, t), x + 3)


def test_ddim_timesteps_span_the_schedule():
    assert ddim_timesteps(1000, 1) == [999]  # one step starts from pure noise, like every other count
    assert ddim_timesteps(1000, 2) == [0, 999]
    times = ddim_timesteps(1000, 50)
    assert len(times) == 50 and times[0] == 0 and times[-1] == 999
    with pytest.raises(InputError, match="--steps"):
        ddim_timesteps(100, 101)
