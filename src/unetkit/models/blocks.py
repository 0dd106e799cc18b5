"""Building blocks shared by the U-Nets: double convolution, down step, up step.

Shapes are B x C x H x W throughout.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DoubleConv(nn.Module):
    """(3x3 conv -> BatchNorm -> ReLU) twice; padding 1 keeps H x W.

    `residual`: the block's input is added before the last ReLU (through a 1x1
    convolution and BatchNorm where the widths differ), as in ResNet's basic
    block; a plain block's weights keep their names, so runs saved before load.
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None, residual: bool = False) -> None:
        super().__init__()
        mid = mid_channels or out_channels
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, mid, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.act = nn.ReLU(inplace=True)  # a module, after the sum: hooks and surgery see it like the first
        self.skip: nn.Module | None = None
        if residual:
            self.skip = nn.Identity() if in_channels == out_channels else nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        if self.skip is not None:
            y = y + self.skip(x)
        return self.act(y)


class Down(nn.Module):
    """2x2 max-pool, then a double convolution: halves H and W (floor for odd sizes)."""

    def __init__(self, in_channels: int, out_channels: int, residual: bool = False) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.conv = DoubleConv(in_channels, out_channels, residual=residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


class Up(nn.Module):
    """Upsample the coarse features to the skip's exact size, concatenate, double convolution.

    Bilinear upsampling keeps the channels (the convolution then mixes them);
    a 2x2 transposed convolution halves them. The U-Net pads its input to a
    multiple of 2**depth, so the upsampled map always matches the skip.
    `align_corners=True` (the tutorial's choice) makes the interpolation depend
    on the map's size, so tiles of different sizes disagree; False is shift-
    equivariant, which tiled prediction needs to match a whole-image pass.
    """

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool, align_corners: bool = False,
                 residual: bool = False) -> None:
        super().__init__()
        self.bilinear = bilinear
        if bilinear:
            self.up: nn.Module = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=align_corners)
            self.conv = DoubleConv(in_channels, out_channels, in_channels // 2, residual=residual)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(in_channels, out_channels, residual=residual)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.up(coarse)  # B x C' x 2h x 2w == skip's H x W
        return self.conv(torch.cat([skip, up], dim=1))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Mirror-pad H and W at their ends (bottom, right) up to multiples of `multiple`; returns the padding to undo.

    Mirroring (not zeros) gives the border pixels real-looking context; an axis
    too short to mirror is extended by repetition. Padding only at the ends keeps
    the pooling grid anchored at the top-left pixel, as it is for every window of
    a tiled prediction (they start on the grid): centred padding moved a whole
    odd-sized image's grid by a pixel, and its windows then disagreed with it.
    """
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    pads = (0, pad_w, 0, pad_h)  # left, right, top, bottom
    if pad_h == 0 and pad_w == 0:
        return x, pads
    mirrorable = max(pads[0], pads[1]) < width and max(pads[2], pads[3]) < height
    return F.pad(x, pads, mode="reflect" if mirrorable else "replicate"), pads


def crop_padding(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo `pad_to_multiple`."""
    left, right, top, bottom = pads
    return x[..., top : x.shape[-2] - bottom, left : x.shape[-1] - right]
