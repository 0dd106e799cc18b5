"""The paper's U-Net (Ronneberger et al. 2015): valid convolutions, so the output is smaller than the input.

Every 3x3 convolution is unpadded and loses one pixel on each side, so only
some input sizes work (each level must have an even size before pooling) and
the output lacks a border of `margin(depth)` pixels (92 for depth 4: 572 ->
388). Predictors tile with the size helpers below; the network does no padding
or tiling itself.

With the defaults: widths 64..1024, 23 convolution layers (18 3x3, 4 2x2
up-convolutions, one 1x1), 31,030,658 parameters for 1 input channel and 2
classes. Shapes are B x C x H x W throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from unetkit.errors import InputError


@dataclass(frozen=True)
class UNetClassicConfig:
    """The architecture, saved as JSON beside the weights."""

    in_channels: int = 1
    num_classes: int = 2
    base_width: int = 64
    depth: int = 4  # number of poolings
    dropout: float = 0.5  # on the bottom level's output, "at the end of the contracting path"

    def __post_init__(self) -> None:
        for name in ("in_channels", "num_classes", "base_width", "depth"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise InputError(f"unet-classic {name}={value!r}: must be a whole number >= 1")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise InputError(f"unet-classic dropout={self.dropout!r}: must be a probability in [0, 1)")

    @property
    def widths(self) -> list[int]:
        """Channels per level, top to bottom: base_width * 2**level (64..1024 for the defaults)."""
        return [self.base_width * 2**level for level in range(self.depth + 1)]


# ---------------------------------------------------------------------------
# Size arithmetic. Each 3x3 valid convolution loses 1 pixel per side, each
# 2x2 pool halves (the size must be even), each 2x2 up-convolution doubles.
# The functions follow the sizes through the network instead of using a table,
# so they stay right for any depth.


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_depth(depth: int) -> None:
    if not _is_int(depth) or depth < 1:
        raise InputError(f"depth {depth!r}: must be a whole number >= 1")


def _trace(size: int, depth: int) -> tuple[int | None, str]:
    """Follow one side through the network: (output size, "") or (None, why it fails)."""
    for _ in range(depth):  # contracting path
        size -= 4  # two valid 3x3 convolutions
        if size < 1:
            return None, f"a level would have a size < 1 (too small for depth {depth})"
        if size % 2:
            return None, "every level must have an even size before pooling"
        size //= 2  # 2x2 max-pool
    size -= 4  # bottom level
    if size < 1:
        return None, f"a level would have a size < 1 (too small for depth {depth})"
    for _ in range(depth):  # expanding path
        size = 2 * size - 4  # up-convolution, then two valid 3x3 convolutions
        if size < 1:
            return None, f"a level would have a size < 1 (too small for depth {depth})"
    return size, ""


@lru_cache(maxsize=None)
def _smallest_valid_input_size(depth: int) -> int:
    """Searched, not tabulated: 18, 44, 92, 188 for depth 1..4."""
    size = 1
    while _trace(size, depth)[0] is None:
        size += 1
    return size


def _check_size(size: int, what: str) -> None:
    if not _is_int(size) or size < 1:
        raise InputError(f"{what} {size!r}: must be a whole number >= 1")


def is_valid_input_size(size: int, depth: int = 4) -> bool:
    """Whether an image side of `size` pixels goes through the network (even before every pooling, >= 1 everywhere)."""
    _check_size(size, "input size")
    _check_depth(depth)
    return _trace(size, depth)[0] is not None


def nearest_valid_input_size(size: int, depth: int = 4) -> int:
    """The valid input size closest to `size` (the larger one when two are equally close).

    Valid sizes are the smallest one plus multiples of 2**depth: beyond the
    smallest, adding 2**depth to the input adds exactly 1 to the bottom level.
    """
    _check_size(size, "input size")
    _check_depth(depth)
    smallest, step = _smallest_valid_input_size(depth), 2**depth
    if size <= smallest:
        return smallest
    below = smallest + (size - smallest) // step * step
    above = below if below == size else below + step
    return below if size - below < above - size else above


def valid_output_size(input_size: int, depth: int = 4) -> int:
    """The output side for an input side; InputError naming the nearest valid input size when it does not fit."""
    _check_size(input_size, "input size")
    _check_depth(depth)
    output, why = _trace(input_size, depth)
    if output is None:
        nearest = nearest_valid_input_size(input_size, depth)
        raise InputError(f"input {input_size}: {why}; nearest valid input size: {nearest}")
    return output


def margin(depth: int = 4) -> int:
    """Pixels lost on each side (92 for depth 4): for every valid input, output = input - 2 * margin."""
    _check_depth(depth)
    smallest = _smallest_valid_input_size(depth)
    return (smallest - valid_output_size(smallest, depth)) // 2


def input_size_for_output(output_size: int, depth: int = 4) -> int:
    """The smallest valid input side whose output side is >= `output_size`; predictors pick tiles with it."""
    _check_size(output_size, "output size")
    _check_depth(depth)
    smallest, step = _smallest_valid_input_size(depth), 2**depth
    wanted = output_size + 2 * margin(depth)
    if wanted <= smallest:
        return smallest
    return smallest + math.ceil((wanted - smallest) / step) * step


# ---------------------------------------------------------------------------
# Parts. The padded U-Net's blocks (blocks.py) use BatchNorm and padding 1;
# the paper's network has neither, so it has its own small parts.


class ValidDoubleConv(nn.Module):
    """(3x3 valid conv -> ReLU) twice, no normalisation: B x C x H x W -> B x C' x (H-4) x (W-4)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


def centre_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The centre height x width of x (the paper crops the skip because border pixels are lost in every convolution)."""
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


class ValidUp(nn.Module):
    """2x2 up-convolution halving the channels, concatenate [cropped skip, upsampled], valid double convolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
        self.conv = ValidDoubleConv(in_channels // 2 + out_channels, out_channels)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.up(coarse)  # B x C/2 x 2h x 2w
        skip = centre_crop(skip, up.shape[-2], up.shape[-1])  # B x C' x 2h x 2w
        return self.conv(torch.cat([skip, up], dim=1))  # B x C' x (2h-4) x (2w-4)


# ---------------------------------------------------------------------------


class UNetClassic(nn.Module):
    """The paper's U-Net: valid 3x3 convolutions + ReLU, 2x2 max-pools, 2x2 up-convolutions, cropped skips.

    forward: B x in_channels x H x W -> B x num_classes x (H - 2m) x (W - 2m) logits,
    m = margin(depth), for H and W valid input sizes (572 x 572 -> 388 x 388).

    Dropout: the paper has "drop-out layers at the end of the contracting path"
    without saying where exactly; here one nn.Dropout(config.dropout) acts on
    the bottom level's output (after its double convolution, before the first
    up-convolution), so every expanding level sees the dropped features.
    """

    def __init__(self, config: UNetClassicConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.widths
        self.encoder = nn.ModuleList(
            ValidDoubleConv(config.in_channels if level == 0 else widths[level - 1], widths[level])
            for level in range(config.depth)
        )
        self.pool = nn.MaxPool2d(2)
        self.bottom = ValidDoubleConv(widths[-2], widths[-1])
        self.dropout = nn.Dropout(config.dropout)
        self.ups = nn.ModuleList(ValidUp(widths[level + 1], widths[level]) for level in reversed(range(config.depth)))
        self.head = nn.Conv2d(widths[0], config.num_classes, kernel_size=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal weights (std sqrt(2 / N), N = incoming nodes of one neuron, as in the paper), zero biases.

        For a 3x3 or 1x1 convolution N = in_channels * k * k, which is kaiming_normal_
        with fan_in. For the 2x2 stride-2 up-convolution each output pixel receives
        exactly one input pixel per channel, so N = in_channels; kaiming_normal_
        would use out_channels * 4 there (PyTorch's fan_in of a transposed weight).
        """
        for module in self.modules():
            if isinstance(module, nn.ConvTranspose2d):
                nn.init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / module.in_channels))
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    # The size helpers for this model's depth, so a predictor can ask the model.
    @property
    def margin(self) -> int:
        return margin(self.config.depth)

    def valid_output_size(self, input_size: int) -> int:
        return valid_output_size(input_size, self.config.depth)

    def is_valid_input_size(self, size: int) -> bool:
        return is_valid_input_size(size, self.config.depth)

    def nearest_valid_input_size(self, size: int) -> int:
        return nearest_valid_input_size(size, self.config.depth)

    def input_size_for_output(self, output_size: int) -> int:
        return input_size_for_output(output_size, self.config.depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected B x {self.config.in_channels} x H x W, got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        for side, size in (("height", height), ("width", width)):
            _, why = _trace(size, self.config.depth)
            if why:
                nearest = nearest_valid_input_size(size, self.config.depth)
                raise InputError(f"input {height}x{width}: {side} {size}: {why}; nearest valid input size: {nearest}")

        skips = []
        for level, conv in enumerate(self.encoder):
            x = conv(x if level == 0 else self.pool(x))  # B x widths[level] x (h-4) x (w-4)
            skips.append(x)
        x = self.dropout(self.bottom(self.pool(x)))  # B x widths[-1] x h' x w' (28 x 28 for 572)
        for up in self.ups:
            x = up(x, skips.pop())  # B x widths[level] x (2h-4) x (2w-4)
        return self.head(x)  # B x num_classes x (H - 2m) x (W - 2m)
