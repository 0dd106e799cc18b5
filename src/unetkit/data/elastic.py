"""Geometry for augmentation: one sampling grid per sample, one `grid_sample` per batch.

A sampling grid says, for every output pixel, where in the input to read. It
is built in pixel units about the image centre and normalised once at the end:

    q(p) = R(angle) @ F(flips) @ (p - c) / scale + c + shift + d(p)

p is an output pixel, c the image centre, R a rotation, F a diagonal of +-1
(flips) and d the elastic displacement field of Ronneberger et al. 2015:
displacements drawn on a coarse grid (3 x 3 points by default) from a Gaussian
with `sigma_px` pixels standard deviation, interpolated bicubically to every
pixel. Working in pixels keeps rotations of non-square images free of shear.

Conventions (shared by every function here, and by `warp`):

- grids are B x H x W x 2 with (x, y) = (width, height) last, as `grid_sample` wants;
- align_corners=True: -1 and +1 are the centres of the first and last pixels, so
  the identity grid reads every pixel at its own centre;
- padding_mode="reflection": reads outside the image reflect about the border
  pixels' centres, so rotated or shifted images get no black corners.

`warp` resamples images bilinearly and labels by nearest neighbour. Nearest
sampling copies an input value (no arithmetic on values), so a warped label map
only ever holds values its input held.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ALIGN_CORNERS = True
PADDING_MODE = "reflection"
LARGEST_EXACT_LABEL = 2**24  # float32 holds every integer up to here exactly


def _check_size(height: int, width: int) -> None:
    if height < 2 or width < 2:
        raise ValueError(f"image {height}x{width}: warping needs at least 2 pixels on each side")


def _pixel_coordinates(height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """H x W x 2 (x, y) pixel coordinates relative to the image centre ((W-1)/2, (H-1)/2)."""
    x = torch.arange(width, dtype=torch.float32, device=device) - (width - 1) / 2
    y = torch.arange(height, dtype=torch.float32, device=device) - (height - 1) / 2
    return torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=-1)  # H x W x 2


def _normalise(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Centred pixel coordinates (..., 2) -> grid_sample coordinates for align_corners=True."""
    half = torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=points.dtype, device=points.device)
    return points / half


def identity_grid(batch: int, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """B x H x W x 2 grid that reads every pixel at its own centre."""
    _check_size(height, width)
    grid = _normalise(_pixel_coordinates(height, width, device), height, width)
    return grid.expand(batch, height, width, 2).contiguous()


def elastic_displacement(
    batch: int, height: int, width: int, generator: torch.Generator, grid: int = 3, sigma_px: float = 10.0
) -> torch.Tensor:
    """B x H x W x 2 smooth random displacements (dx, dy) in pixels, as in the U-Net paper.

    Draws B x 2 x grid x grid displacements ~ N(0, sigma_px^2) on a coarse grid whose
    outer points sit on the corner pixels, and interpolates them bicubically to
    every pixel (at a grid point the field equals the drawn value).
    """
    if grid < 1:
        raise ValueError(f"elastic grid={grid}: needs at least 1 point per side")
    if sigma_px < 0:
        raise ValueError(f"elastic sigma_px={sigma_px}: must be >= 0")
    _check_size(height, width)
    coarse = torch.randn(batch, 2, grid, grid, generator=generator, device=generator.device) * sigma_px
    field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)  # B x 2 x H x W
    return field.permute(0, 2, 3, 1)  # B x H x W x 2


def elastic_grid(
    batch: int, height: int, width: int, generator: torch.Generator, grid: int = 3, sigma_px: float = 10.0
) -> torch.Tensor:
    """B x H x W x 2 normalised sampling grid: the identity plus `elastic_displacement`."""
    displacement = elastic_displacement(batch, height, width, generator, grid, sigma_px)
    return sampling_grid(height, width, displacement=displacement)


def sampling_grid(
    height: int,
    width: int,
    *,
    angle: torch.Tensor | None = None,
    flip_x: torch.Tensor | None = None,
    flip_y: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    displacement: torch.Tensor | None = None,
) -> torch.Tensor:
    """B x H x W x 2 normalised grid for q(p) = R F (p - c) / scale + c + shift + d(p).

    angle: B radians; angle = pi/2 gives `torch.rot90(x, 1, (-2, -1))` on a square.
    flip_x, flip_y: B bools (mirror left-right, top-bottom). scale: B zoom factors
    (> 1 magnifies). shift: B x 2 (dx, dy) pixels. displacement: B x H x W x 2
    pixels. Leave any out for none; at least one must give the batch size.
    """
    _check_size(height, width)
    given = [t for t in (angle, flip_x, flip_y, scale, shift, displacement) if t is not None]
    if not given:
        raise ValueError("sampling_grid: give at least one of angle, flips, scale, shift, displacement")
    batch, device = len(given[0]), given[0].device
    if any(len(t) != batch for t in given):
        raise ValueError(f"sampling_grid: batch sizes differ: {[len(t) for t in given]}")

    matrix = torch.eye(2, device=device).expand(batch, 2, 2)  # B x 2 x 2, acts on (x, y) columns
    if flip_x is not None or flip_y is not None:
        signs = torch.ones(batch, 2, device=device)
        if flip_x is not None:
            signs[:, 0] = 1 - 2 * flip_x.to(device, torch.float32)
        if flip_y is not None:
            signs[:, 1] = 1 - 2 * flip_y.to(device, torch.float32)
        matrix = torch.diag_embed(signs)
    if scale is not None:
        if bool((scale <= 0).any()):
            raise ValueError(f"sampling_grid: scale must be > 0, got {scale.min().item()}")
        matrix = matrix / scale.to(device, torch.float32)[:, None, None]
    if angle is not None:
        cos, sin = torch.cos(angle.float()), torch.sin(angle.float())
        rotation = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # B x 2 x 2
        matrix = rotation.to(device) @ matrix

    points = _pixel_coordinates(height, width, device)  # H x W x 2
    source = torch.einsum("bij,hwj->bhwi", matrix, points)  # B x H x W x 2
    if shift is not None:
        source = source + shift.to(device, torch.float32)[:, None, None, :]
    if displacement is not None:
        if displacement.shape != (batch, height, width, 2):
            raise ValueError(f"displacement {tuple(displacement.shape)}: expected {(batch, height, width, 2)}")
        source = source + displacement.to(device, torch.float32)
    return _normalise(source, height, width)


def warp(
    images: torch.Tensor, grid: torch.Tensor, labels: torch.Tensor | None = None, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Resample a batch along one grid per sample: images and weights bilinear, labels nearest.

    images: B x C x H x W float, grid: B x H' x W' x 2, labels: B x H x W integer,
    weights: B x H x W float. Returns (B x C x H' x W', B x H' x W' or None, B x H' x W' or None).
    """
    batch = images.shape[0]
    if grid.ndim != 4 or grid.shape[0] != batch or grid.shape[-1] != 2:
        raise ValueError(f"grid {tuple(grid.shape)}: expected {batch} x H x W x 2 for images {tuple(images.shape)}")
    sample = dict(padding_mode=PADDING_MODE, align_corners=ALIGN_CORNERS)
    out_images = F.grid_sample(images, grid.to(images.dtype), mode="bilinear", **sample)
    out_labels = out_weights = None
    if labels is not None:
        if labels.numel() and int(labels.abs().max()) >= LARGEST_EXACT_LABEL:
            raise ValueError(f"label value {int(labels.abs().max())}: labels must stay below 2**24 to warp exactly")
        as_float = labels[:, None].to(torch.float32)  # B x 1 x H x W
        out_labels = F.grid_sample(as_float, grid.float(), mode="nearest", **sample)[:, 0].to(labels.dtype)
    if weights is not None:
        out_weights = F.grid_sample(weights[:, None], grid.to(weights.dtype), mode="bilinear", **sample)[:, 0]
    return out_images, out_labels, out_weights

