"""The padded U-Net (output size = input size), as in the tutorial and milesial/Pytorch-UNet.

With base width 64 and depth 4 the widths are 64-128-256-512-1024 with
transposed convolutions, or 64-128-256-512-512 with bilinear upsampling (the
bottom is halved because bilinear upsampling cannot halve channels itself).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from unetkit.errors import InputError
from unetkit.models.blocks import DoubleConv, Down, Up, crop_padding, pad_to_multiple


@dataclass(frozen=True)
class UNetConfig:
    """The architecture, saved as JSON beside the weights."""

    in_channels: int = 1
    num_classes: int = 2  # 1 means one logit (sigmoid, binary)
    base_width: int = 64
    depth: int = 4
    bilinear: bool = True
    align_corners: bool = False  # True only to reproduce the tutorial (see blocks.Up)
    residual: bool = False  # each double convolution adds its input back (blocks.DoubleConv)

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.num_classes < 1:
            raise InputError(f"U-Net needs at least one input channel and one output, got {asdict(self)}")
        if self.depth < 1 or self.base_width < 2 or self.base_width % 2:
            raise InputError(f"U-Net depth {self.depth} / width {self.base_width}: depth must be >= 1, width even and >= 2")

    @property
    def receptive_field(self) -> int:
        """Pixels of input one output pixel sees (nominal): two 3x3 convolutions per level, 2x2 pooling,
        and upsampling counted as bilinear. Measured with impulses, the extent varies with a pixel's
        place on the pooling grid (depth 4: 220-236 px bilinear, 188-204 px with transposed
        convolutions, against 230 here); context_halo adds a grid step and rounds up, which covers it."""
        field = 1
        for level in range(self.depth):
            field += 4 * 2**level + 2**level  # two convolutions and a pooling on the way down
        field += 4 * 2**self.depth  # the bottom's two convolutions
        for level in range(self.depth):
            field += 2 ** (level + 1) + 4 * 2**level  # upsampling from below, two convolutions on the way up
        return field

    @property
    def widths(self) -> list[int]:
        """Encoder widths from top to bottom (the bottom is halved with bilinear upsampling)."""
        factor = 2 if self.bilinear else 1
        return [self.base_width * 2**i for i in range(self.depth)] + [self.base_width * 2**self.depth // factor]


class UNet(nn.Module):
    """Encoder of double convolutions and max-pools, a symmetric decoder, skip connections by concatenation.

    forward: B x in_channels x H x W -> B x num_classes x H x W logits, for any H, W >= 1
    (the input is mirror-padded to a multiple of 2**depth and the output cropped back).
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.widths
        factor = 2 if config.bilinear else 1
        self.inc = DoubleConv(config.in_channels, widths[0], residual=config.residual)
        self.downs = nn.ModuleList(Down(widths[i], widths[i + 1], config.residual) for i in range(config.depth))
        ups = []
        for level in reversed(range(config.depth)):
            out = widths[level] if level == 0 else widths[level] // factor
            ups.append(Up(2 * widths[level], out, config.bilinear, config.align_corners, config.residual))
        self.ups = nn.ModuleList(ups)
        self.head = nn.Conv2d(widths[0], config.num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected B x {self.config.in_channels} x H x W, got {tuple(x.shape)}")
        x, pads = pad_to_multiple(x, 2**self.config.depth)
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return crop_padding(self.head(x), pads)
