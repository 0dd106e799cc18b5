"""Regions (cell instances) from a boundary probability map, by seeded watershed.

Thresholding a membrane map merges two cells wherever one membrane pixel is
missed; a watershed floods the map from its basins instead, so a weak spot in
a membrane does not join the cells on either side. Users of EM data judge by
Rand error, where this usually wins.

Seeds are the connected regions where the boundary probability is below
`seed_threshold`, kept only if they have at least `min_seed_size` pixels (smaller
basins are noise inside a cell and would split it); every pixel is then
flooded from the seeds in the order of increasing boundary probability.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

MIN_SEED_SIZE = 25  # pixels: about a 5 x 5 patch, smaller than any ISBI cell profile, larger than noise basins
SEED_THRESHOLD = 0.3
MASK_THRESHOLD = 0.5  # where the mask draws the boundary: the seeds when no basin is under SEED_THRESHOLD


def watershed_regions(
    boundary_prob: np.ndarray, seed_threshold: float = SEED_THRESHOLD, min_seed_size: int = MIN_SEED_SIZE
) -> np.ndarray:
    """H x W boundary probability -> H x W int32 regions 1..N covering every pixel (0 only if there is no seed).

    A weak model may never be sure enough for `seed_threshold` anywhere; the seeds are then the cells of the
    mask itself (probability under 0.5), so a mask with cells never gets an empty cell map.
    """
    if boundary_prob.ndim != 2:
        raise ValueError(f"boundary_prob must be 2-D, got shape {boundary_prob.shape}")
    if not np.all(np.isfinite(boundary_prob)):
        raise ValueError("boundary_prob holds NaN or infinite values")
    for threshold in sorted({seed_threshold, MASK_THRESHOLD}):
        markers = _seeds(boundary_prob < threshold, min_seed_size)
        if markers.any():
            return watershed(boundary_prob, markers).astype(np.int32)
    return np.zeros(boundary_prob.shape, dtype=np.int32)


def object_regions(
    background_prob: np.ndarray, seed_threshold: float = SEED_THRESHOLD, min_seed_size: int = MIN_SEED_SIZE
) -> np.ndarray:
    """H x W background probability -> H x W int32 objects 1..N on background 0 (nuclei, not cells that tile).

    The objects are the mask's foreground (probability under 0.5); touching objects are split where the
    watershed from their confident interiors meets; a foreground region without such an interior is an
    object of its own, so that no object of the mask is lost.
    """
    if background_prob.ndim != 2 or not np.all(np.isfinite(background_prob)):
        raise ValueError(f"background_prob must be 2-D and finite, got shape {background_prob.shape}")
    foreground = background_prob < MASK_THRESHOLD
    markers = _seeds(background_prob < seed_threshold, min_seed_size)
    regions = watershed(background_prob, markers, mask=foreground).astype(np.int32)
    unreached, _ = ndimage.label(foreground & (regions == 0))
    regions[unreached > 0] = unreached[unreached > 0] + regions.max(initial=0)
    return regions


def _seeds(basins: np.ndarray, min_seed_size: int) -> np.ndarray:
    """The 4-connected regions of `basins` with at least `min_seed_size` pixels, numbered 1..N (0 elsewhere)."""
    seeds, count = ndimage.label(basins)
    if count == 0:
        return np.zeros(basins.shape, dtype=np.int32)
    sizes = np.bincount(seeds.ravel())
    keep = sizes >= min_seed_size
    keep[0] = False
    relabel = np.zeros(len(sizes), dtype=np.int32)
    relabel[keep] = np.arange(1, int(keep.sum()) + 1)
    return relabel[seeds]
