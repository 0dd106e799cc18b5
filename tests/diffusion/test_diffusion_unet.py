"""The diffusion U-Net: shapes, conditioning, and that it can learn."""

import pytest
import torch

from unetkit.diffusion.objectives import diffusion_loss
from unetkit.diffusion.schedule import cosine_schedule
from unetkit.errors import InputError
from unetkit.models.diffusion_unet import DiffusionUNet, DiffusionUNetConfig, timestep_embedding

TINY = dict(base_width=8, width_multipliers=(1, 2, 2), attention_levels=(2,), heads=2, groups=4)


@pytest.mark.parametrize("size", [(16, 16), (17, 23), (32, 8), (5, 5)])
def test_output_shape_equals_input_shape(size):
    model = DiffusionUNet(DiffusionUNetConfig(in_channels=2, label_classes=3, context_dim=6, **TINY))
    x = torch.randn(2, 2, *size)
    labels = torch.randint(0, 3, (2, *size))
    out = model(x, torch.tensor([3, 500]), labels, torch.randn(2, 4, 6))
    assert out.shape == x.shape


def test_a_fresh_model_outputs_zero_and_every_block_starts_as_identity():
    """Zero-initialised last layers: training starts from predicting no noise, a stable start."""
    model = DiffusionUNet(DiffusionUNetConfig(**TINY))
    assert torch.count_nonzero(model(torch.randn(1, 1, 16, 16), torch.tensor([10]))) == 0


def test_time_labels_and_context_all_change_the_output():
    torch.manual_seed(0)
    model = DiffusionUNet(DiffusionUNetConfig(label_classes=2, context_dim=4, **TINY))
    for parameter in model.parameters():  # leave the zero initialisation so that every path is live
        torch.nn.init.normal_(parameter, std=0.1)
    x, labels, context = torch.randn(1, 1, 16, 16), torch.randint(0, 2, (1, 16, 16)), torch.randn(1, 3, 4)
    base = model(x, torch.tensor([100]), labels, context)
    assert not torch.allclose(base, model(x, torch.tensor([700]), labels, context))
    assert not torch.allclose(base, model(x, torch.tensor([100]), 1 - labels, context))
    assert not torch.allclose(base, model(x, torch.tensor([100]), None, context))  # no label = the unconditional model
    assert not torch.allclose(base, model(x, torch.tensor([100]), labels, torch.randn(1, 3, 4)))
    vector = model(x, torch.tensor([100]), labels, context[:, 0])  # a vector is one token
    assert vector.shape == x.shape


def test_timestep_embedding_tells_neighbouring_steps_apart():
    embedding = timestep_embedding(torch.tensor([0, 1, 999]), 32)
    assert embedding.shape == (3, 32)
    assert (embedding[0] - embedding[1]).abs().max() > 0.1
    assert embedding.abs().max() <= 1.0


def test_a_tiny_model_overfits_one_image():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    image = (torch.rand(1, 1, 16, 16, generator=generator) > 0.5).float() * 2 - 1
    model = DiffusionUNet(DiffusionUNetConfig(**TINY))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = cosine_schedule(100)
    batch = image.expand(16, -1, -1, -1)

    def mean_loss(repeats: int) -> float:
        with torch.no_grad():
            check = torch.Generator().manual_seed(123)
            return sum(float(diffusion_loss(model, schedule, batch, check)) for _ in range(repeats)) / repeats

    before = mean_loss(8)
    for _ in range(300):
        loss = diffusion_loss(model, schedule, batch, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert mean_loss(8) < before / 5


def test_widths_that_groupnorm_cannot_split_are_refused():
    with pytest.raises(InputError, match=r"--width 12: .* must be multiples of 8 .* give a multiple of 8, e.g. 16"):
        DiffusionUNetConfig(base_width=12, groups=8)
