"""Synthetic EM-like images with exact membrane labels.

The images mimic the ISBI 2012 ssTEM sections (textured grey cells separated
by dark membranes, about a fifth of the pixels membrane) so that the demo and
the tests can train and check a U-Net without downloading anything. Labels use
the ISBI encoding: 255 = cell interior, 0 = membrane.

Dark organelles and vesicles inside the cells are as dark as membranes, so a
plain intensity threshold cannot reproduce the labels: the task needs the
shape context a U-Net learns.
"""

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import cKDTree

INTERIOR = 255
MEMBRANE = 0

_SEED_SPACING = 26.0  # px between candidate cell centres: cells of ~20-60 px
_MARGIN = 2 * _SEED_SPACING  # cells generated beyond the border, so cells cross it
_NEIGHBOURS = 6  # seeds compared per pixel in the weighted Voronoi partition


def _smooth_field(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Random field with about zero mean and unit std, varying over about `scale` px.

    Smoothed noise on a coarse grid, upsampled by cubic B-splines: its cost
    does not grow with `scale` and it has no kinks (it bends membranes).
    """
    step = max(scale / 2.0, 1.0)
    coarse_shape = tuple(int(n / step) + 4 for n in shape)
    coarse = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), 1.0, mode="wrap")
    coarse = (coarse - coarse.mean()) / coarse.std()
    return _bspline_rows(_bspline_rows(coarse, shape[0], step).T, shape[1], step).T


def _bspline_rows(coarse: np.ndarray, n_fine: int, step: float) -> np.ndarray:
    """Upsample the rows of `coarse` to `n_fine` rows by `step` with cubic B-spline weights.

    Four taps per row with plain numpy: small matrix products would start BLAS
    threads that cost more than they save.
    """
    position = 1.0 + np.arange(n_fine) / step
    base = np.floor(position).astype(int)
    t = (position - base)[:, None]
    weights = ((1 - t) ** 3, 3 * t**3 - 6 * t**2 + 4, -3 * t**3 + 3 * t**2 + 3 * t + 1, t**3)
    return sum(w * coarse[base + offset] for w, offset in zip(weights, (-1, 0, 1, 2))) / 6.0


def _grain(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-std fine texture: white noise blurred by `sigma` px (cytoplasm granularity)."""
    grain = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return grain * (2.0 * np.sqrt(np.pi) * sigma)


def _cell_seeds(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Cell centres (K, 2) from a jittered grid thinned by a smooth density.

    Thinning by a smooth field gives regions of small and of large cells, as in
    neural tissue, rather than a uniform honeycomb.
    """
    h, w = shape
    ys = np.arange(-_MARGIN, h + _MARGIN, _SEED_SPACING)
    xs = np.arange(-_MARGIN, w + _MARGIN, _SEED_SPACING)
    grid = np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1)
    grid = grid + rng.uniform(-0.45, 0.45, grid.shape) * _SEED_SPACING
    density = _smooth_field(grid.shape[:2], 4.0, rng)
    keep = rng.random(grid.shape[:2]) < np.clip(0.6 + 0.45 * density, 0.1, 1.0)
    if keep.sum() < _NEIGHBOURS:  # tiny images: the margin grid alone has enough points
        keep[:] = True
    return grid[keep]


def _partition(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells of a warped power (weighted Voronoi) diagram.

    Returns the cell id per pixel, the exact distance (px, sub-pixel, in warped
    coordinates) to the nearest cell edge, and the distance to the edge with
    the third-nearest cell, which is small only near junctions. The weights
    vary cell sizes; the warp bends the straight edges into the wavy outlines of
    real membranes.
    """
    seeds = _cell_seeds(shape, rng)
    weights = rng.uniform(0.0, 0.3, len(seeds)) * _SEED_SPACING**2
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    yy += 5.0 * _smooth_field(shape, 30.0, rng) + 1.5 * _smooth_field(shape, 10.0, rng)
    xx += 5.0 * _smooth_field(shape, 30.0, rng) + 1.5 * _smooth_field(shape, 10.0, rng)
    points = np.stack([yy.ravel(), xx.ravel()], axis=1)
    dist, idx = cKDTree(seeds).query(points, k=_NEIGHBOURS, workers=-1)
    power = dist**2 - weights[idx]
    order = np.argsort(power, axis=1)[:, :3]
    rows = np.arange(len(points))[:, None]
    power, idx = power[rows, order], idx[rows, order]
    # Power diagram edges are straight: the power gap grows at 2 |s_i - s_j| per px across one.
    separation = np.linalg.norm(seeds[idx[:, 1:]] - seeds[idx[:, :1]], axis=2)
    edge = (power[:, 1:] - power[:, :1]) / (2.0 * separation)
    return idx[:, 0].reshape(shape), edge[:, 0].reshape(shape), edge[:, 1].reshape(shape)


def _membrane_depth(edge: np.ndarray, junction: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Distance to the membrane centre relative to its half-width: <= 1 is membrane.

    Membranes are 2.5-6.5 px wide bands along cell edges, a little thicker at
    junctions; the half-width follows a smooth random field, so thickness
    changes along each membrane as in ssTEM sections.
    """
    half_width = np.clip(2.1 + 0.6 * _smooth_field(edge.shape, 30.0, rng), 1.5, 3.2)
    return np.minimum(edge / half_width, junction / (half_width + 0.5))


def _organelles(edge: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Darkness in [0, 1] of organelles and vesicles, kept clear of membranes.

    Solid blobs are as dark as membranes and rings are thin dark outlines, but
    both are compact and isolated: only their shape tells them apart from
    membranes, which is what defeats a plain threshold.
    """
    darkness = np.zeros(edge.shape)
    for _ in range(rng.poisson(edge.size / 100.0)):
        radius, aspect = rng.uniform(1.5, 7.5), rng.uniform(1.0, 1.8)
        centre = (int(rng.integers(0, edge.shape[0])), int(rng.integers(0, edge.shape[1])))
        if edge[centre] >= aspect * radius + 5.0:
            _stamp_organelle(darkness, centre, radius, aspect, rng)
    return darkness


def _stamp_organelle(
    canvas: np.ndarray, centre: tuple[int, int], radius: float, aspect: float, rng: np.random.Generator
) -> None:
    """Draw one soft-edged, randomly oriented ellipse, solid or a vesicle ring, onto `canvas` in place."""
    cy, cx = centre
    reach = int(np.ceil(aspect * radius)) + 2
    y0, y1 = max(cy - reach, 0), min(cy + reach + 1, canvas.shape[0])
    x0, x1 = max(cx - reach, 0), min(cx + reach + 1, canvas.shape[1])
    yy, xx = np.mgrid[y0:y1, x0:x1]
    angle = rng.uniform(0.0, np.pi)
    u = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
    v = (xx - cx) * np.cos(angle) - (yy - cy) * np.sin(angle)
    r = np.hypot(u / aspect, v)
    if radius > 2.5 and rng.random() < 0.6:
        blob = rng.uniform(0.3, 0.7) * np.clip(1.2 - np.abs(r - radius), 0.0, 1.0)
    else:
        blob = rng.uniform(0.5, 1.0) * np.clip(radius - r + 0.5, 0.0, 1.0)
    canvas[y0:y1, x0:x1] = np.maximum(canvas[y0:y1, x0:x1], blob)


def _render(cells: np.ndarray, depth: np.ndarray, organelles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grey image: textured cell interiors, dark organelles and membranes, blur and noise.

    Membranes are darkest at their centre and lighter towards the label edge,
    as the stained membrane lines in ssTEM are narrower than their labels.
    """
    shape = cells.shape
    cell_level = rng.normal(162.0, 9.0, int(cells.max()) + 1)
    interior = (
        cell_level[cells]
        + 10.0 * _smooth_field(shape, 40.0, rng)
        + 18.0 * _grain(shape, 0.8, rng)
        + 8.0 * _grain(shape, 2.5, rng)
    )
    dark_level = 75.0 + 10.0 * _smooth_field(shape, 25.0, rng)
    image = interior + organelles * (dark_level - interior)
    membrane = dark_level + 15.0 * depth**2 + 6.0 * _grain(shape, 1.0, rng)
    image = np.where(depth <= 1.0, membrane, image)
    image = ndimage.gaussian_filter(image, rng.uniform(0.6, 1.0))
    shading = rng.uniform(0.9, 1.1) + 0.08 * _smooth_field(shape, 120.0, rng)
    image = image * shading + rng.uniform(-10.0, 10.0)
    image += rng.normal(0.0, rng.uniform(5.0, 10.0), shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def make_em_image(size: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One (image, label) pair: image uint8 (H, W); label uint8 (H, W) with 255 = cell interior, 0 = membrane (ISBI 2012 encoding)."""
    shape = (int(size[0]), int(size[1]))
    if min(shape) < 1:
        raise ValueError(f"size must be positive, got {size}")
    cells, edge, junction = _partition(shape, rng)
    depth = _membrane_depth(edge, junction, rng)
    image = _render(cells, depth, _organelles(edge, rng), rng)
    label = np.where(depth <= 1.0, MEMBRANE, INTERIOR).astype(np.uint8)
    return image, label


def make_em_dataset(n_images: int, size: tuple[int, int] = (256, 256), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n pairs stacked: images uint8 (N, H, W), labels uint8 (N, H, W) in {0, 255}; deterministic for a seed."""
    if n_images < 0:
        raise ValueError(f"n_images must be >= 0, got {n_images}")
    rng = np.random.default_rng(seed)
    images = np.empty((n_images, *size), dtype=np.uint8)
    labels = np.empty((n_images, *size), dtype=np.uint8)
    for i in range(n_images):
        images[i], labels[i] = make_em_image(size, rng)
    return images, labels


def save_pairs(root: Path, images: np.ndarray, labels: np.ndarray) -> tuple[Path, Path]:
    """Write root/image/{i}.png and root/label/{i}.png (i = 0..N-1, no zero padding) with Pillow; return (image_dir, label_dir)."""
    if images.shape != labels.shape or images.ndim != 3:
        raise ValueError(f"need matching (N, H, W) stacks, got {images.shape} and {labels.shape}")
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise ValueError(f"need uint8 stacks (8-bit PNGs), got {images.dtype} and {labels.dtype}")
    image_dir, label_dir = Path(root) / "image", Path(root) / "label"
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(image_dir / f"{i}.png")
        Image.fromarray(label).save(label_dir / f"{i}.png")
    return image_dir, label_dir
