"""The padded U-Net: output size = input size for every H x W, the tutorial's widths, clear errors."""

from __future__ import annotations

import pytest
import torch

from unetkit.errors import InputError
from unetkit.models import available_models, build_model
from unetkit.models.blocks import crop_padding, pad_to_multiple


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("bilinear", [True, False])
@pytest.mark.parametrize("height,width", [(1, 1), (7, 7), (17, 33), (37, 50), (64, 64), (65, 31), (100, 3)])
def test_output_size_equals_input_size(bilinear: bool, height: int, width: int) -> None:
    model = build_model("unet", in_channels=2, num_classes=3, base_width=4, depth=3, bilinear=bilinear)
    x = torch.randn(2, 2, height, width, requires_grad=True)
    y = model(x)
    assert y.shape == (2, 3, height, width)
    y.sum().backward()  # gradients reach the input through every level
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_seed_architecture_matches_the_tutorial() -> None:
    """milesial/Pytorch-UNet: 17.26 M parameters bilinear (64..512), 31.04 M with transposed convs (64..1024)."""
    bilinear = build_model("unet", in_channels=1, num_classes=1, base_width=64, depth=4, bilinear=True)
    transposed = build_model("unet", in_channels=1, num_classes=1, base_width=64, depth=4, bilinear=False)
    assert bilinear.config.widths == [64, 128, 256, 512, 512]
    assert transposed.config.widths == [64, 128, 256, 512, 1024]
    assert count(bilinear) == 17_261_825
    # by hand: encoder 18_846_016 + up-convs 2_786_240 + decoder convs 9_404_160 + 1x1 head 65
    assert count(transposed) == 31_036_481
    norms = [m for m in bilinear.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 18  # two per double convolution, nine double convolutions


@pytest.mark.parametrize("bilinear", [True, False])
def test_residual_blocks_add_their_input_and_keep_the_plain_networks_weights_names(bilinear: bool) -> None:
    plain = build_model("unet", in_channels=1, num_classes=2, base_width=4, depth=2, bilinear=bilinear)
    residual = build_model("unet", in_channels=1, num_classes=2, base_width=4, depth=2, bilinear=bilinear, residual=True)
    assert set(plain.state_dict()) < set(residual.state_dict())  # runs saved before residual blocks still load
    assert all(".skip." in name for name in set(residual.state_dict()) - set(plain.state_dict()))
    torch.manual_seed(0)
    x = torch.randn(2, 1, 23, 30, requires_grad=True)
    y = residual(x)
    assert y.shape == (2, 2, 23, 30)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    block = residual.inc  # with its convolutions silenced a residual block passes its (projected) input through
    torch.nn.init.zeros_(block.block[3].weight)
    torch.nn.init.zeros_(block.block[4].bias)
    block.block[4].reset_running_stats()  # the forward above moved them
    block.eval()
    z = torch.randn(1, 1, 8, 8)
    assert torch.allclose(block(z), torch.relu(block.skip(z)))
    assert block.skip(z).abs().sum() > 0


def test_padding_round_trip_is_exact() -> None:
    x = torch.randn(1, 1, 13, 30)
    padded, pads = pad_to_multiple(x, 16)
    assert padded.shape[-2:] == (16, 32)
    assert torch.equal(crop_padding(padded, pads), x)


def test_wrong_input_channels_is_an_error() -> None:
    model = build_model("unet", in_channels=1, base_width=4, depth=2)
    with pytest.raises(ValueError, match="B x 1 x H x W"):
        model(torch.randn(1, 3, 16, 16))


@pytest.mark.parametrize("options", [{"depth": 0}, {"base_width": 3}, {"num_classes": 0}, {"colour": True}])
def test_bad_options_are_input_errors(options: dict) -> None:
    with pytest.raises(InputError):
        build_model("unet", **options)


def test_unknown_model_name_lists_the_known_ones() -> None:
    with pytest.raises(InputError, match="unet"):
        build_model("resnet")
    assert "unet" in available_models()
