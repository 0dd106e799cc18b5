"""FCN-32s/16s/8s: output size = input size, score layers per variant, hand-counted parameters, bilinear start."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from unetkit.errors import InputError
from unetkit.models import available_models, build_model
from unetkit.models.fcn import FCN, FCNConfig
from unetkit.models.registry import model_config

VARIANTS = ["fcn32s", "fcn16s", "fcn8s"]


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("height,width", [(1, 1), (17, 33), (37, 50), (64, 64), (100, 3)])
def test_output_size_equals_input_size(variant: str, height: int, width: int) -> None:
    model = build_model(variant, in_channels=2, num_classes=3, base_width=2)
    x = torch.randn(2, 2, height, width, requires_grad=True)
    y = model(x)
    assert y.shape == (2, 3, height, width)
    y.sum().backward()  # gradients reach the input through every block
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    "variant,scores,upsamplings",
    [("fcn32s", ["score_pool5"], [32]), ("fcn16s", ["score_pool4", "score_pool5"], [2, 16]),
     ("fcn8s", ["score_pool3", "score_pool4", "score_pool5"], [2, 2, 8])],
)
def test_variants_differ_in_score_layers(variant: str, scores: list[str], upsamplings: list[int]) -> None:
    model = build_model(variant, num_classes=3, base_width=2)
    score_convs = [name for name, m in model.named_modules()
                   if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and m.out_channels == 3]
    assert sorted(score_convs) == scores  # 1 / 2 / 3 score layers
    ups = [m.stride[0] for m in model.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert sorted(ups) == upsamplings
    assert model.config.variant == variant and model.config.depth == 5


def test_parameter_count_by_hand() -> None:
    """base_width 4, 1 input channel, 2 classes: widths 4-8-16-32-32, fc6/fc7 64 channels.

    3x3 convs have no bias (BatchNorm follows, 2 params per channel):
      block1: 9*1*4 + 8 + 9*4*4 + 8                      =    196
      block2: 9*4*8 + 16 + 9*8*8 + 16                    =    896
      block3: 9*8*16 + 32 + 2*(9*16*16 + 32)             =  5_856
      block4: 9*16*32 + 64 + 2*(9*32*32 + 64)            = 23_232
      block5: 3*(9*32*32 + 64)                           = 27_840
      fc6 3x3 32->64 + bias: 9*32*64 + 64                = 18_496
      fc7 1x1 64->64 + bias: 64*64 + 64                  =  4_160
      score_pool5: 64*2 + 2                              =    130
                                              encoder etc. 80_806
    fcn32s: + up x32, kernel 64, 2->2, no bias: 2*2*64*64 = 16_384 -> 97_190
    fcn16s: + score_pool4 32*2+2 = 66, up x2 2*2*4*4 = 64, up x16 2*2*32*32 = 4_096 -> 85_032
    fcn8s:  + score_pool4 66, score_pool3 16*2+2 = 34, two up x2 2*64, up x8 2*2*16*16 = 1_024 -> 82_058
    """
    counts = {v: count(build_model(v, in_channels=1, num_classes=2, base_width=4)) for v in VARIANTS}
    print("parameters (base_width 4):", counts)
    assert counts == {"fcn32s": 97_190, "fcn16s": 85_032, "fcn8s": 82_058}
    for width in (32, 64):
        print(f"parameters (base_width {width}):", {v: count(build_model(v, base_width=width)) for v in VARIANTS})


@pytest.mark.parametrize("variant", VARIANTS)
def test_transposed_convs_start_as_bilinear_upsampling(variant: str) -> None:
    model = build_model(variant, num_classes=3, base_width=2)
    ups = [m for m in model.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    torch.manual_seed(0)
    for up in ups:
        f = up.stride[0]
        x = torch.randn(1, 3, 6, 5)
        with torch.no_grad():
            y = up(x)
            expected = F.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)
            assert y.shape == expected.shape == (1, 3, 6 * f, 5 * f)
            inner = (..., slice(f, -f), slice(f, -f))  # the borders see zero padding, interpolate clamps
            torch.testing.assert_close(y[inner], expected[inner])
            const = up(torch.full((1, 3, 6, 5), 2.5))
            torch.testing.assert_close(const[inner], torch.full_like(const[inner], 2.5))


def test_fcn16s_and_fcn8s_start_as_fcn32s_like() -> None:
    """The skip score layers start at zero (the paper's choice): they add nothing until trained."""
    model = build_model("fcn8s", num_classes=2, base_width=2).eval()
    for name in ("score_pool4", "score_pool3"):
        conv = getattr(model, name)
        assert not conv.weight.any() and not conv.bias.any()


def test_registry_builds_all_three() -> None:
    assert set(VARIANTS) <= set(available_models())
    for variant in VARIANTS:
        model = build_model(variant, in_channels=1, num_classes=2, base_width=4)
        assert isinstance(model, FCN) and model.config.variant == variant
        assert isinstance(model.config, FCNConfig)
    assert FCNConfig().variant == "fcn8s" and FCNConfig().base_width == 32


@pytest.mark.parametrize(
    "name,options",
    [("fcn8s", {"in_channels": 0}), ("fcn8s", {"num_classes": 0}), ("fcn8s", {"base_width": 0}),
     ("fcn8s", {"dropout": 1.0}), ("fcn8s", {"variant": "fcn32s"}), ("fcn16s", {"variant": "fcn4s"}),
     ("fcn32s", {"depth": 5}), ("fcn9s", {})],
)
def test_bad_configs_are_input_errors(name: str, options: dict) -> None:
    with pytest.raises(InputError):
        model_config(name, **options)


def test_fcn_config_rejects_unknown_variant() -> None:
    with pytest.raises(InputError, match="fcn4s"):
        FCNConfig(variant="fcn4s")


def test_wrong_input_channels_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="expected B x 1"):
        build_model("fcn8s", base_width=2)(torch.randn(1, 3, 32, 32))


def test_tiny_fcn8s_overfits_one_image() -> None:
    torch.manual_seed(0)
    model = build_model("fcn8s", in_channels=1, num_classes=2, base_width=4, dropout=0.0)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    target = (((yy - 14) ** 2 + (xx - 18) ** 2) < 64).long()[None]  # a disk, 1 x 32 x 32
    image = (target.float() + 0.3 * torch.randn(1, 32, 32))[None]  # 1 x 1 x 32 x 32
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        loss = F.cross_entropy(model(image), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if losses[-1] < losses[0] / 5:
            break
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f} in {len(losses)} steps")
    assert losses[-1] < losses[0] / 5
