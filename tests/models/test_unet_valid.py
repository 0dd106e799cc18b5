"""The paper's U-Net (Ronneberger et al. 2015): 572 -> 388, its layers and sizes, the size helpers, init, dropout.

One forward of the full 31 M-parameter network at 572 x 572 (a module fixture, a
few seconds on a CPU); every other forward uses tiny widths.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from unetkit.errors import InputError
from unetkit.models import available_models, build_model
from unetkit.models.registry import config_to_json
from unetkit.models.unet_valid import (
    UNetClassic,
    UNetClassicConfig,
    centre_crop,
    input_size_for_output,
    is_valid_input_size,
    margin,
    nearest_valid_input_size,
    valid_output_size,
)


def tiny(depth: int = 2, **options) -> UNetClassic:
    options = {"in_channels": 1, "num_classes": 2, "base_width": 2, "depth": depth, **options}
    return build_model("unet-classic", **options)


@pytest.fixture(scope="module")
def paper_model() -> UNetClassic:
    torch.manual_seed(0)
    return build_model("unet-classic", in_channels=1, num_classes=2).eval()


@pytest.fixture(scope="module")
def paper_trace(paper_model: UNetClassic) -> dict[str, list[tuple[int, ...]]]:
    """Output shapes (C x H x W) of every named part, in call order, for one 572 x 572 forward."""
    shapes: dict[str, list[tuple[int, ...]]] = {}
    names = ["encoder.0", "encoder.1", "encoder.2", "encoder.3", "pool", "bottom", "dropout", "head"]
    names += [f"ups.{i}.{part}" for i in range(4) for part in ("up", "conv")]
    modules = dict(paper_model.named_modules())

    def record(name: str):
        return lambda module, inputs, output: shapes.setdefault(name, []).append(tuple(output.shape[1:]))

    hooks = [modules[name].register_forward_hook(record(name)) for name in names]
    with torch.no_grad():
        shapes["output"] = [tuple(paper_model(torch.randn(1, 1, 572, 572)).shape[1:])]
    for hook in hooks:
        hook.remove()
    return shapes


# The paper's Figure 1, level by level (C x H x W).
@pytest.mark.parametrize(
    "name,expected",
    [
        ("encoder.0", [(64, 568, 568)]),
        ("encoder.1", [(128, 280, 280)]),
        ("encoder.2", [(256, 136, 136)]),
        ("encoder.3", [(512, 64, 64)]),
        ("pool", [(64, 284, 284), (128, 140, 140), (256, 68, 68), (512, 32, 32)]),
        ("bottom", [(1024, 28, 28)]),
        ("dropout", [(1024, 28, 28)]),  # at the end of the contracting path
        ("ups.0.up", [(512, 56, 56)]),
        ("ups.0.conv", [(512, 52, 52)]),
        ("ups.1.up", [(256, 104, 104)]),
        ("ups.1.conv", [(256, 100, 100)]),
        ("ups.2.up", [(128, 200, 200)]),
        ("ups.2.conv", [(128, 196, 196)]),
        ("ups.3.up", [(64, 392, 392)]),
        ("ups.3.conv", [(64, 388, 388)]),
        ("head", [(2, 388, 388)]),
        ("output", [(2, 388, 388)]),
    ],
)
def test_paper_feature_sizes(paper_trace: dict, name: str, expected: list) -> None:
    assert paper_trace[name] == expected


def test_paper_layers_and_parameter_count(paper_model: UNetClassic) -> None:
    assert paper_model.config.widths == [64, 128, 256, 512, 1024]
    convs = [m for m in paper_model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    valid_3x3 = [m for m in convs if type(m) is nn.Conv2d and m.kernel_size == (3, 3) and m.padding == (0, 0)]
    up_convs = [m for m in convs if isinstance(m, nn.ConvTranspose2d) and m.kernel_size == m.stride == (2, 2)]
    one_by_one = [m for m in convs if type(m) is nn.Conv2d and m.kernel_size == (1, 1)]
    assert (len(convs), len(valid_3x3), len(up_convs), len(one_by_one)) == (23, 18, 4, 1)
    assert [m.out_channels * 2 == m.in_channels for m in up_convs] == [True] * 4  # each halves the channels
    assert not [m for m in paper_model.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d))]
    # By hand (weights + biases):
    #   contracting 3x3 convs   640 + 36_928 + 73_856 + 147_584 + 295_168 + 590_080
    #                           + 1_180_160 + 2_359_808 + 4_719_616 + 9_438_208      = 18_842_048
    #   up-convs 2x2            2_097_664 + 524_544 + 131_200 + 32_832               =  2_786_240
    #   expanding 3x3 convs     4_719_104 + 2_359_808 + 1_179_904 + 590_080
    #                           + 295_040 + 147_584 + 73_792 + 36_928                =  9_402_240
    #   1x1 head                64 * 2 + 2                                           =        130
    #   total                                                                          31_030_658
    assert sum(p.numel() for p in paper_model.parameters()) == 31_030_658


def test_he_initialisation(paper_model: UNetClassic) -> None:
    """std sqrt(2 / N), N = incoming nodes of one neuron; biases zero."""
    bottom_conv = paper_model.bottom.block[2]  # 1024 -> 1024, 3x3: N = 9216, 9.4 M weights
    first_up = paper_model.ups[0].up  # 1024 -> 512, 2x2 stride 2: N = 1024
    for layer, fan_in in ((bottom_conv, 1024 * 9), (first_up, 1024)):
        expected = math.sqrt(2 / fan_in)
        assert layer.weight.std().item() == pytest.approx(expected, rel=0.02)
        assert abs(layer.weight.mean().item()) < 0.02 * expected
    biases = [m.bias for m in paper_model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(biases) == 23 and all(torch.count_nonzero(b) == 0 for b in biases)


def test_model_answers_size_questions(paper_model: UNetClassic) -> None:
    assert paper_model.margin == 92
    assert paper_model.valid_output_size(572) == 388
    assert paper_model.is_valid_input_size(572) and not paper_model.is_valid_input_size(570)
    assert paper_model.nearest_valid_input_size(570) == 572
    assert paper_model.input_size_for_output(388) == 572
    assert tiny(depth=2).margin == 20 and tiny(depth=2).valid_output_size(44) == 4


@pytest.mark.parametrize(
    "size,depth,output",
    [
        (572, 4, 388),
        (188, 4, 4),  # the smallest for depth 4
        (380, 4, 196),
        (588, 4, 404),
        (572, 3, 484),
        (92, 3, 4),
        (44, 2, 4),
        (48, 2, 8),
        (18, 1, 2),
        (20, 1, 4),
    ],
)
def test_valid_output_size(size: int, depth: int, output: int) -> None:
    assert valid_output_size(size, depth) == output
    assert is_valid_input_size(size, depth)


@pytest.mark.parametrize(
    "size,depth,message",
    [
        (570, 4, "input 570: every level must have an even size before pooling; nearest valid input size: 572"),
        (100, 4, "input 100: .*nearest valid input size: 188"),
        (10, 4, "input 10: a level would have a size < 1.*nearest valid input size: 188"),
        (172, 4, "input 172: a level would have a size < 1.*nearest valid input size: 188"),  # bottom 3 -> output 0
        (580, 4, "nearest valid input size: 588"),  # 572 and 588 are equally close: the larger
        (574, 4, "nearest valid input size: 572"),
        (571, 3, "nearest valid input size: 572"),
        (17, 1, "input 17: .*nearest valid input size: 18"),
    ],
)
def test_invalid_input_size_names_the_nearest_valid_one(size: int, depth: int, message: str) -> None:
    assert not is_valid_input_size(size, depth)
    with pytest.raises(InputError, match=message):
        valid_output_size(size, depth)


@pytest.mark.parametrize(
    "size,depth,nearest",
    [(1, 4, 188), (188, 4, 188), (189, 4, 188), (196, 4, 204), (512, 4, 508), (570, 4, 572), (580, 4, 588),
     (581, 4, 588), (1, 1, 18), (19, 1, 20), (50, 2, 52), (96, 3, 100)],
)  # fmt: skip
def test_nearest_valid_input_size(size: int, depth: int, nearest: int) -> None:
    assert nearest_valid_input_size(size, depth) == nearest


@pytest.mark.parametrize(
    "output,depth,size",
    [(388, 4, 572), (1, 4, 188), (4, 4, 188), (5, 4, 204), (196, 4, 380), (389, 4, 588), (512, 4, 700),
     (1, 1, 18), (3, 1, 20), (9, 2, 52)],
)  # fmt: skip
def test_input_size_for_output(output: int, depth: int, size: int) -> None:
    assert input_size_for_output(output, depth) == size
    assert valid_output_size(size, depth) >= output
    smaller = size - 2**depth  # the next valid size down, if any, is not enough
    assert not is_valid_input_size(smaller, depth) or valid_output_size(smaller, depth) < output


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_size_helpers_against_brute_force(depth: int) -> None:
    """Oracles: a brute-force scan for `nearest`, and the closed form margin = 6 * 2**depth - 4
    (two 1-pixel losses per side at each contracting and expanding level, scaled by 2**level, plus the bottom)."""
    valid = [s for s in range(1, 1200) if is_valid_input_size(s, depth)]
    assert valid[1:] and all(b - a == 2**depth for a, b in zip(valid, valid[1:]))
    assert margin(depth) == 6 * 2**depth - 4
    assert all(valid_output_size(s, depth) == s - 2 * margin(depth) for s in valid)
    for size in range(1, 1100):
        brute = min(valid, key=lambda v: (abs(v - size), v < size))
        assert nearest_valid_input_size(size, depth) == brute
    for output in range(1, valid[-1] - 2 * margin(depth), 7):
        brute = min(s for s in valid if valid_output_size(s, depth) >= output)
        assert input_size_for_output(output, depth) == brute


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_size_helpers_refuse_non_sizes(bad) -> None:
    for helper in (valid_output_size, is_valid_input_size, nearest_valid_input_size, input_size_for_output):
        with pytest.raises(InputError):
            helper(bad)
    with pytest.raises(InputError, match="depth 0"):
        margin(0)


@pytest.mark.parametrize(
    "depth,height,width,in_channels,num_classes",
    [(1, 18, 18, 1, 2), (1, 20, 30, 3, 1), (2, 44, 60, 1, 2), (3, 92, 100, 2, 5), (4, 188, 204, 1, 2),
     (4, 204, 188, 1, 3)],
)  # fmt: skip
def test_tiny_networks_shapes_and_backward(
    depth: int, height: int, width: int, in_channels: int, num_classes: int
) -> None:
    model = tiny(depth, in_channels=in_channels, num_classes=num_classes)
    x = torch.randn(2, in_channels, height, width, requires_grad=True)
    y = model(x)
    expected = (valid_output_size(height, depth), valid_output_size(width, depth))
    assert y.shape == (2, num_classes, *expected)
    assert expected == (height - 2 * model.margin, width - 2 * model.margin)
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_skip_is_centre_cropped_and_comes_first() -> None:
    model = tiny(depth=2, base_width=3).eval()
    seen = {}
    model.encoder[0].register_forward_hook(lambda m, i, o: seen.__setitem__("skip", o))
    model.ups[-1].up.register_forward_hook(lambda m, i, o: seen.__setitem__("up", o))
    model.ups[-1].conv.register_forward_pre_hook(lambda m, i: seen.__setitem__("cat", i[0]))
    with torch.no_grad():
        model(torch.randn(1, 1, 52, 48))
    skip, up, cat = seen["skip"], seen["up"], seen["cat"]  # skip 48 x 44, up 16 x 12
    assert skip.shape[-2:] == (48, 44) and up.shape[-2:] == (16, 12)
    assert torch.equal(cat[:, :3], skip[..., 16:32, 16:28])  # the centre, the skip's channels first
    assert torch.equal(cat[:, 3:], up)
    assert torch.equal(centre_crop(skip, 16, 12), skip[..., 16:32, 16:28])


def test_dropout_acts_on_the_bottom_output_in_training_only() -> None:
    torch.manual_seed(0)
    model = tiny(depth=2, base_width=4)
    seen = {}
    model.bottom.register_forward_hook(lambda m, i, o: seen.__setitem__("bottom", o.clone()))
    model.ups[0].up.register_forward_pre_hook(lambda m, i: seen.__setitem__("into_up", i[0]))
    x = torch.randn(1, 1, 60, 60)

    model.train()
    first, second = model(x), model(x)
    assert not torch.equal(first, second)
    kept = seen["into_up"] != 0
    assert torch.allclose(seen["into_up"][kept], 2 * seen["bottom"][kept])  # survivors scaled by 1 / (1 - 0.5)
    assert 0.3 < 1 - kept[seen["bottom"] != 0].float().mean().item() < 0.7  # about half dropped

    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        assert torch.equal(seen["into_up"], seen["bottom"])

    no_dropout = tiny(depth=2, base_width=4, dropout=0.0).train()
    assert torch.equal(no_dropout(x), no_dropout(x))


@pytest.mark.parametrize(
    "shape,error,message",
    [
        ((1, 1, 572, 570), InputError, "input 572x570: width 570: every level .*nearest valid input size: 572"),
        ((1, 1, 100, 188), InputError, "input 100x188: height 100: .*nearest valid input size: 188"),
        ((1, 1, 172, 188), InputError, "height 172: a level would have a size < 1"),
        ((1, 3, 188, 188), ValueError, r"B x 1 x H x W, got \(1, 3, 188, 188\)"),
        ((1, 188, 188), ValueError, "B x 1 x H x W"),
    ],
)
def test_bad_inputs_are_refused_before_any_work(shape: tuple, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        tiny(depth=4)(torch.randn(*shape))


@pytest.mark.parametrize(
    "options",
    [{"in_channels": 0}, {"num_classes": 0}, {"base_width": 0}, {"depth": 0}, {"depth": 2.5}, {"in_channels": True},
     {"dropout": -0.1}, {"dropout": 1.0}, {"dropout": "0.5"}, {"padding": 1}],
)  # fmt: skip
def test_bad_config_is_an_input_error(options: dict) -> None:
    with pytest.raises(InputError):
        build_model("unet-classic", **options)


def test_registered_and_config_round_trips() -> None:
    assert "unet-classic" in available_models()
    model = build_model("unet-classic", in_channels=1, num_classes=2, base_width=2, depth=1)
    assert isinstance(model, UNetClassic)
    config = UNetClassicConfig(**config_to_json(model.config))
    assert config == model.config
    assert config.widths == [2, 4]
    assert UNetClassicConfig().widths == [64, 128, 256, 512, 1024]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.depth = 3  # type: ignore[misc]
