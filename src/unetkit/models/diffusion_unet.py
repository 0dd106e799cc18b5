"""The U-Net of diffusion models (Ho et al. 2020, Dhariwal & Nichol 2021, Rombach et al. 2022).

The same encoder-decoder with skip connections as the segmentation U-Net
(models/unet.py), with what denoising needs:
- a timestep embedding (sinusoidal features, then an MLP) that every residual
  block receives as a per-channel scale and shift after its second GroupNorm;
- residual blocks with GroupNorm and SiLU instead of double convolutions with
  BatchNorm (batch statistics would mix samples at different noise levels);
- self-attention at the coarse levels, and optional cross-attention to tokens
  (a vector is one token) for conditioning by anything that is not an image;
- optional conditioning by a label map: one-hot classes concatenated to the
  input; an all-zero map means "no label" (classifier-free guidance trains
  with it sometimes).
Shared with the segmentation U-Net: mirror padding to a multiple of 2**depth
and cropping back (output size = input size for any size), and the
concatenating skips. The output is epsilon or v, one value per input channel.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from unetkit.errors import InputError
from unetkit.models.blocks import crop_padding, pad_to_multiple


@dataclass(frozen=True)
class DiffusionUNetConfig:
    """The architecture, saved as JSON beside the weights."""

    in_channels: int = 1  # image channels (also the output's)
    base_width: int = 32
    width_multipliers: tuple[int, ...] = (1, 2, 2, 4)  # one level each; depth = len - 1 downsamplings
    blocks_per_level: int = 1
    attention_levels: tuple[int, ...] = (2, 3)  # levels (0 = full resolution) with self-attention
    heads: int = 4
    groups: int = 8  # GroupNorm groups
    label_classes: int = 0  # > 0: a label map of this many classes is concatenated (one-hot) to the input
    context_dim: int = 0  # > 0: cross-attention to B x N x context_dim tokens at the attention levels
    dropout: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "width_multipliers", tuple(self.width_multipliers))
        object.__setattr__(self, "attention_levels", tuple(self.attention_levels))
        widths = [self.base_width * m for m in self.width_multipliers]
        if not widths or min(widths) < self.groups or any(w % self.groups or w % self.heads for w in widths):
            unit = math.lcm(self.groups, self.heads)
            raise InputError(f"--width {self.base_width}: the diffusion U-Net's level widths {widths} must be multiples of "
                             f"{unit} (GroupNorm groups {self.groups}, attention heads {self.heads}); give a multiple of "
                             f"{unit}, e.g. {max(unit, round(self.base_width / unit) * unit)}")
        if any(not 0 <= level < len(widths) for level in self.attention_levels):
            raise InputError(f"attention levels {self.attention_levels} must be within 0..{len(widths) - 1}")

    @property
    def depth(self) -> int:
        return len(self.width_multipliers) - 1

    @property
    def widths(self) -> list[int]:
        return [self.base_width * m for m in self.width_multipliers]

    def to_json(self) -> dict:
        return asdict(self)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style sinusoidal features of the (integer or real) timestep: B -> B x dim."""
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * frequencies[None]
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    return F.pad(embedding, (0, dim % 2))


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, then GroupNorm modulated by the time embedding (scale and shift), SiLU, conv; plus a skip.

    The last convolution starts at zero, so every block starts as the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, time_dim: int, groups: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time = nn.Linear(time_dim, 2 * out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.time(F.silu(time))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head attention of every pixel to every pixel (self) or to context tokens (cross), residual.

    The output projection starts at zero, so the block starts as the identity.
    """

    def __init__(self, channels: int, heads: int, groups: int, context_dim: int = 0) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.query = nn.Linear(channels, channels)
        source = context_dim or channels
        self.key_value = nn.Linear(source, 2 * channels)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # B x N x C -> B x heads x N x C/heads
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        batch, channels, height, width = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # B x HW x C
        keys, values = self.key_value(tokens if context is None else context).chunk(2, dim=-1)
        attended = F.scaled_dot_product_attention(self._split(self.query(tokens)), self._split(keys), self._split(values))
        attended = self.out(attended.transpose(1, 2).flatten(2))
        return x + attended.transpose(1, 2).reshape(batch, channels, height, width)


class Level(nn.Module):
    """Residual blocks at one resolution, each followed by self-attention (and cross-attention) where configured."""

    def __init__(self, in_channels: int, out_channels: int, config: DiffusionUNetConfig, time_dim: int, attend: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        self.self_attention = nn.ModuleList()
        self.cross_attention = nn.ModuleList()
        for index in range(config.blocks_per_level):
            self.blocks.append(ResBlock(in_channels if index == 0 else out_channels, out_channels, time_dim,
                                        config.groups, config.dropout))
            if attend:
                self.self_attention.append(Attention(out_channels, config.heads, config.groups))
                if config.context_dim:
                    self.cross_attention.append(Attention(out_channels, config.heads, config.groups, config.context_dim))

    def forward(self, x: torch.Tensor, time: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        for index, block in enumerate(self.blocks):
            x = block(x, time)
            if self.self_attention:
                x = self.self_attention[index](x)
            if self.cross_attention and context is not None:
                x = self.cross_attention[index](x, context)
        return x


class DiffusionUNet(nn.Module):
    """forward(x_t B x C x H x W, t B, labels B x H x W long | None, context B x N x D | None) -> B x C x H x W."""

    def __init__(self, config: DiffusionUNetConfig) -> None:
        super().__init__()
        self.config = config
        widths, width = config.widths, config.base_width
        time_dim = 4 * width
        self.time_mlp = nn.Sequential(nn.Linear(width, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.stem = nn.Conv2d(config.in_channels + config.label_classes, widths[0], 3, padding=1)
        attend = set(config.attention_levels)
        self.down_levels = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        previous = widths[0]
        for level, channels in enumerate(widths):
            self.down_levels.append(Level(previous, channels, config, time_dim, level in attend))
            if level < config.depth:
                self.downsamples.append(nn.Conv2d(channels, channels, 3, stride=2, padding=1))
            previous = channels
        self.middle = nn.ModuleList([
            ResBlock(previous, previous, time_dim, config.groups, config.dropout),
            Attention(previous, config.heads, config.groups),
            ResBlock(previous, previous, time_dim, config.groups, config.dropout),
        ])
        self.up_levels = nn.ModuleList()
        for level in reversed(range(config.depth)):  # upsample from level + 1, concatenate level's skip
            self.up_levels.append(Level(widths[level + 1] + widths[level], widths[level], config, time_dim, level in attend))
        self.upsample_convs = nn.ModuleList(
            nn.Conv2d(widths[level + 1], widths[level + 1], 3, padding=1) for level in reversed(range(config.depth))
        )
        self.head = nn.Sequential(nn.GroupNorm(config.groups, widths[0]), nn.SiLU(),
                                  nn.Conv2d(widths[0], config.in_channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def label_input(self, labels: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """One-hot label channels; zeros where labels are None or negative (the "no label" of guidance)."""
        batch, _, height, width = like.shape
        channels = self.config.label_classes
        if labels is None:
            return like.new_zeros(batch, channels, height, width)
        if labels.shape != (batch, height, width):
            raise ValueError(f"labels must be B x H x W = {(batch, height, width)}, got {tuple(labels.shape)}")
        known = labels >= 0
        one_hot = F.one_hot(labels.clamp(0, channels - 1).long(), channels).permute(0, 3, 1, 2).to(like.dtype)
        return one_hot * known[:, None].to(like.dtype)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected B x {self.config.in_channels} x H x W, got {tuple(x.shape)}")
        if self.config.label_classes:
            x = torch.cat([x, self.label_input(labels, x)], dim=1)
        if context is not None and context.dim() == 2:
            context = context[:, None]  # a vector is one token
        x, pads = pad_to_multiple(x, 2**self.config.depth)
        time = self.time_mlp(timestep_embedding(t, self.config.base_width))
        h = self.stem(x)
        skips = []
        for level, block in enumerate(self.down_levels):
            h = block(h, time, context)
            if level < self.config.depth:
                skips.append(h)
                h = self.downsamples[level](h)
        h = self.middle[2](self.middle[1](self.middle[0](h, time)), time)
        for block, conv in zip(self.up_levels, self.upsample_convs):
            skip = skips.pop()
            h = conv(F.interpolate(h, size=skip.shape[-2:], mode="nearest"))
            h = block(torch.cat([skip, h], dim=1), time, context)
        return crop_padding(self.head(h), pads)
