"""The fully convolutional network (FCN) baseline of Long, Shelhamer & Darrell (CVPR 2015).

A VGG-style encoder (five blocks of 3x3 convolutions, each followed by a 2x2
max-pool: pool3 at 1/8, pool4 at 1/16, pool5 at 1/32), "fc6/fc7" as
convolutions on pool5, 1x1 score layers, and learned upsampling by transposed
convolutions initialised to bilinear interpolation. The variants differ in how
many pooled maps they score and sum before the last upsampling:

    fcn32s: score(fc7) x32
    fcn16s: (score(fc7) x2 + score(pool4)) x16
    fcn8s:  ((score(fc7) x2 + score(pool4)) x2 + score(pool3)) x8

Differences from the paper, because we train from scratch on one greyscale
channel instead of fine-tuning ImageNet VGG-16:
- widths are base_width x (1, 2, 4, 8, 8) (VGG-16: 64-128-256-512-512) and fc6/fc7
  have 16 x base_width channels (VGG-16: 4096), fc6 is 3x3 (VGG-16: 7x7);
- every encoder convolution is followed by BatchNorm, like the U-Nets, so the
  13-convolution encoder trains from random weights without a pretrained start
  (fc6/fc7 keep the paper's dropout and no BatchNorm: at 1/32 a tile's map can be
  1 x 1, and BatchNorm of one value per channel fails with batch size 1);
- no 100-pixel input padding and crop offsets: the input is mirror-padded to a
  multiple of 32, so every pooled map is exactly 1/2**k of it and the transposed
  convolutions (kernel 2f, stride f, padding f/2) give exactly f times the size;
- all variants are trained at once (no fcn32s -> 16s -> 8s staging), but the
  pool4/pool3 score layers start at zero as in the paper, so fcn16s/fcn8s start
  out computing what fcn32s computes and learn the finer corrections.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import nn

from unetkit.errors import InputError
from unetkit.models.blocks import crop_padding, pad_to_multiple

VARIANTS = ("fcn32s", "fcn16s", "fcn8s")
_CONVS_PER_BLOCK = (2, 2, 3, 3, 3)  # VGG-16
_WIDTH_FACTORS = (1, 2, 4, 8, 8)  # VGG-16 is 64-128-256-512-512


@dataclass(frozen=True)
class FCNConfig:
    """The architecture, saved as JSON beside the weights."""

    in_channels: int = 1
    num_classes: int = 2  # 1 means one logit (sigmoid, binary)
    base_width: int = 32  # width of the first VGG block; doubles per block up to 8x
    variant: str = "fcn8s"
    dropout: float = 0.5  # after fc6 and fc7, as in the paper

    _fixed_variant: ClassVar[str | None] = None  # set by the per-name configs of the registry

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.num_classes < 1:
            raise InputError(f"FCN needs at least one input channel and one output, got {asdict(self)}")
        if self.base_width < 1:
            raise InputError(f"FCN width {self.base_width}: must be >= 1")
        if self.variant not in VARIANTS:
            raise InputError(f"FCN variant {self.variant!r}: choose one of {', '.join(VARIANTS)}")
        if self._fixed_variant is not None and self.variant != self._fixed_variant:
            raise InputError(f"--model {self._fixed_variant} cannot be variant {self.variant!r}; use --model {self.variant}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"FCN dropout {self.dropout}: must be in [0, 1)")

    @property
    def depth(self) -> int:
        """Five 2x2 pools: inputs are aligned to 2**depth = 32, like a U-Net of depth 5 (the predictors read this)."""
        return 5

    @property
    def widths(self) -> list[int]:
        """Encoder block widths from top to bottom."""
        return [self.base_width * f for f in _WIDTH_FACTORS]

    @property
    def fc_width(self) -> int:
        return 16 * self.base_width

    @property
    def receptive_field(self) -> int:
        """Pixels of input one output pixel sees (nominal): the VGG blocks' 3x3 convolutions and 2x2 pools, fc6's
        3x3 at stride 32, then each learned upsampling (kernel twice its factor: two coarse pixels) on the way
        back to stride 1; the pool5 path is the widest. context_halo adds a grid step and rounds up."""
        field, jump = 1, 1
        for convs in _CONVS_PER_BLOCK:
            field += 2 * convs * jump + jump  # the block's convolutions, then its pool
            jump *= 2
        field += 2 * jump  # fc6
        while jump > 1:  # upsampled from stride 32 to 1 (x2 steps for the skip scores, then the rest at once)
            field += jump
            jump //= 2
        return field

    @property
    def stride(self) -> int:
        """The output stride before the last upsampling: 32, 16 or 8."""
        return int(self.variant[3:-1])


@dataclass(frozen=True)
class FCN32sConfig(FCNConfig):
    variant: str = "fcn32s"
    _fixed_variant: ClassVar[str | None] = "fcn32s"


@dataclass(frozen=True)
class FCN16sConfig(FCNConfig):
    variant: str = "fcn16s"
    _fixed_variant: ClassVar[str | None] = "fcn16s"


@dataclass(frozen=True)
class FCN8sConfig(FCNConfig):
    variant: str = "fcn8s"
    _fixed_variant: ClassVar[str | None] = "fcn8s"


def vgg_block(in_channels: int, out_channels: int, convs: int) -> nn.Sequential:
    """`convs` x (3x3 conv -> BatchNorm -> ReLU), then a 2x2 max-pool: halves H and W."""
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [
            nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
    layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def bilinear_kernel(channels: int, factor: int) -> torch.Tensor:
    """Weights that make ConvTranspose2d(kernel 2f, stride f, padding f/2) per-channel bilinear upsampling.

    Output pixel o then weighs input i by 1 - |(o + 0.5)/f - 0.5 - i|, which is
    F.interpolate(mode="bilinear", align_corners=False) away from the borders
    (there the transposed convolution sees zeros where interpolate clamps).
    """
    size = 2 * factor
    centre = (size - 1) / 2
    taps = 1 - (torch.arange(size, dtype=torch.float32) - centre).abs() / factor  # 2f, e.g. 1/4 3/4 3/4 1/4
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = taps[:, None] * taps[None, :]  # no mixing between classes
    return weight


def upsample(channels: int, factor: int) -> nn.ConvTranspose2d:
    """Learned x`factor` upsampling started at bilinear interpolation (no bias, as in the paper)."""
    up = nn.ConvTranspose2d(channels, channels, kernel_size=2 * factor, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, factor))
    return up


def score(in_channels: int, num_classes: int, zero: bool = False) -> nn.Conv2d:
    """1x1 convolution to class scores; the skip scores start at zero (the paper's choice)."""
    conv = nn.Conv2d(in_channels, num_classes, kernel_size=1)
    if zero:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    return conv


class FCN(nn.Module):
    """FCN-32s/16s/8s: VGG encoder, convolutional fc6/fc7, score maps summed across strides, learned upsampling.

    forward: B x in_channels x H x W -> B x num_classes x H x W logits, for any H, W >= 1
    (the input is mirror-padded to a multiple of 32 and the output cropped back).
    """

    def __init__(self, config: FCNConfig) -> None:
        super().__init__()
        self.config = config
        widths, k = config.widths, config.num_classes
        self.blocks = nn.ModuleList(
            vgg_block(config.in_channels if i == 0 else widths[i - 1], widths[i], n) for i, n in enumerate(_CONVS_PER_BLOCK)
        )
        self.fc = nn.Sequential(  # fc6, fc7 as convolutions
            nn.Conv2d(widths[4], config.fc_width, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Dropout2d(config.dropout),
            nn.Conv2d(config.fc_width, config.fc_width, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Dropout2d(config.dropout),
        )
        self.score_pool5 = score(config.fc_width, k)
        if config.stride <= 16:
            self.score_pool4 = score(widths[3], k, zero=True)
            self.up_pool5 = upsample(k, 2)
        if config.stride <= 8:
            self.score_pool3 = score(widths[2], k, zero=True)
            self.up_pool4 = upsample(k, 2)
        self.up_final = upsample(k, config.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected B x {self.config.in_channels} x H x W, got {tuple(x.shape)}")
        x, pads = pad_to_multiple(x, 32)  # B x C x 32h x 32w
        pools = []
        for block in self.blocks:
            x = block(x)
            pools.append(x)  # pool1..pool5: B x w_i x 32h/2**i x 32w/2**i
        scores = self.score_pool5(self.fc(pools[4]))  # B x K x h x w
        if self.config.stride <= 16:
            scores = self.up_pool5(scores) + self.score_pool4(pools[3])  # B x K x 2h x 2w
        if self.config.stride <= 8:
            scores = self.up_pool4(scores) + self.score_pool3(pools[2])  # B x K x 4h x 4w
        return crop_padding(self.up_final(scores), pads)  # B x K x 32h x 32w -> B x K x H x W
