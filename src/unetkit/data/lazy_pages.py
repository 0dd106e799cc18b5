"""What the stacks read a page at a time (io.TiffPages, zarr_pages.ZarrPages) share: their length and the rule
for a page index, so that prediction takes either as it takes a numpy stack."""

from __future__ import annotations

import numpy as np


class LazyPages:
    """A (P, H, W[, C]) stack whose pages are read when indexed; subclasses set `shape` and read a page."""

    shape: tuple[int, ...]

    def __len__(self) -> int:
        return self.shape[0]

    def _page_index(self, index: int) -> int:
        """`index` as a page number 0..P-1 (negative ones from the end, as numpy's); one index at a time."""
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"{type(self).__name__} takes one page index, not {index!r}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"page {index} of {len(self)}")
        return int(index) % len(self)
