"""A stack's outputs, filled page by page in a hidden folder of the predictions folder, and resumable.

Held in memory, a stack's mask and cell ids grew with the stack (a 500-page 4096 x 4096 EM volume: 8 GiB of
mask and 16 of cells before the first byte was written), and a predict stopped on page 480 of 500 kept nothing.
Here each page's mask, cell ids and probabilities go into memory-mapped files in OUT/.NAME.unetkit-pages/ as the
page is predicted, and a journal there records how many pages are complete (written after their bytes are
flushed to disk, so it never counts a page that is not there). When the last page is done, `finish` writes the
visible outputs (mask and cells as `write_tiff` lays them out, the probabilities moved into place) and removes
the folder: nothing in OUT looks like a result before it is one. A predict stopped midway (Ctrl-C, SIGTERM, a
damaged page, a full disk, a killed process) leaves the folder; `predict --skip-done`, with the same run and
options on the unchanged input, goes on from the first page not done. Without --skip-done, or with anything
changed, the stack starts again from its first page.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import tifffile

from unetkit.data.calibration import Calibration, PageAxes
from unetkit.data.io import write_atomic, write_tiff

WORK_SUFFIX = ".unetkit-pages"  # OUT/.NAME.unetkit-pages/: a stack's outputs while its pages are predicted
JOURNAL = "pages.json"
MASK, CELLS, PROBABILITIES = "mask.npy", "cells.npy", "probabilities.tif"


def work_folder(out: Path, stem: str) -> Path:
    """Where the pages of the stack `stem` are kept until the stack is complete."""
    return Path(out) / f".{stem}{WORK_SUFFIX}"


def unfinished_stacks(out: Path) -> list[tuple[str, int, int]]:
    """(stem, pages done, pages) of each stack a stopped predict left part-done in `out`, for the interrupt's
    message; unreadable journals are left out."""
    found = []
    for folder in sorted(Path(out).glob(f".*{WORK_SUFFIX}")):
        try:
            journal = json.loads((folder / JOURNAL).read_text())
            found.append((folder.name[1:].removesuffix(WORK_SUFFIX), int(journal["done"]),
                          int(journal["identity"]["mask"][0][0])))
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue
    return found


class StackOutputs:
    """The memory-mapped outputs of one stack being predicted, and how many of its pages are complete.

    `mask`: P x H x W[ x 3] in the run's mask dtype; `probabilities`: P x K x H x W float32 (with --prob), a TIFF
    already laid out as the final NAME_prob.tif; `cells`: P x H x W cell ids (with --instances), uint16 until the ids
    need uint32 (`widen_cells`). `done`: pages complete; `cell_offset`, `objects`: what the cell labelling carries
    from page to page."""

    def __init__(self, folder: Path, journal: dict[str, Any], mask: np.ndarray, cells: np.ndarray | None,
                 probabilities: np.ndarray | None) -> None:
        self.folder = folder
        self.journal = journal
        self.mask = mask
        self.cells = cells
        self.probabilities = probabilities

    @property
    def done(self) -> int:
        return int(self.journal["done"])

    @property
    def cell_offset(self) -> int:
        return int(self.journal["cell_offset"])

    @property
    def objects(self) -> bool | None:
        return self.journal["objects"]

    @classmethod
    def begin(cls, out: Path, stem: str, identity: dict[str, Any], mask_shape: tuple[int, ...], mask_dtype: Any,
              probability_shape: tuple[int, ...] | None, probability_store: Callable[[Path], np.ndarray],
              cells: bool, resume: bool) -> "StackOutputs":
        """The stack's outputs: the pages a stopped predict left, when `resume` and the journal's `identity` (the
        prediction key, the input's size and time, the shapes) is this call's; else new, empty ones (anything left
        of an earlier call is removed). `probability_store(path)`: a new memory-mapped TIFF of the probabilities
        (P x K x H x W), laid out as the final NAME_prob.tif."""
        folder = work_folder(out, stem)
        identity = {**identity, "mask": [list(mask_shape), np.dtype(mask_dtype).str],
                    "probabilities": None if probability_shape is None else list(probability_shape), "cells": cells}
        journal = _read_journal(folder)
        if resume and journal is not None and journal.get("identity") == identity:
            try:
                return cls._open(folder, journal)
            except (OSError, ValueError):  # a file of the folder damaged or gone: start the stack again
                pass
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        mask = np.lib.format.open_memmap(folder / MASK, mode="w+", dtype=mask_dtype, shape=mask_shape)
        cell_ids = (np.lib.format.open_memmap(folder / CELLS, mode="w+", dtype=np.uint16, shape=mask_shape[:3])
                    if cells else None)
        probabilities = probability_store(folder / PROBABILITIES) if probability_shape is not None else None
        journal = {"identity": identity, "done": 0, "cell_offset": 0, "objects": None}
        outputs = cls(folder, journal, mask, cell_ids, probabilities)
        outputs._write_journal()
        return outputs

    @classmethod
    def _open(cls, folder: Path, journal: dict[str, Any]) -> "StackOutputs":
        identity = journal["identity"]
        mask = np.load(folder / MASK, mmap_mode="r+")
        if [list(mask.shape), mask.dtype.str] != identity["mask"]:
            raise ValueError("mask shape")
        cells = np.load(folder / CELLS, mmap_mode="r+") if identity["cells"] else None
        probabilities = None
        if identity["probabilities"] is not None:
            probabilities = tifffile.memmap(folder / PROBABILITIES, mode="r+").reshape(identity["probabilities"])
        return cls(folder, journal, mask, cells, probabilities)

    def widen_cells(self, ids: np.ndarray) -> np.ndarray:
        """The cell ids as uint32, copied page by page into a new file (the ids passed 65,535)."""
        wider = np.lib.format.open_memmap(self.folder / f"wide-{CELLS}", mode="w+", dtype=np.uint32, shape=ids.shape)
        for index in range(len(ids)):
            wider[index] = ids[index]
        wider.flush()
        del ids
        self.cells = None
        (self.folder / f"wide-{CELLS}").replace(self.folder / CELLS)
        self.cells = wider
        return wider

    def page_done(self, cell_offset: int = 0, objects: bool | None = None) -> None:
        """One more page complete: its bytes flushed to disk, then counted in the journal."""
        for array in (self.mask, self.cells, self.probabilities):
            if array is not None:
                _flush(array)
        self.journal.update(done=self.done + 1, cell_offset=cell_offset, objects=objects)
        self._write_journal()

    def finish(self, mask_path: Path, cells_path: Path | None, probability_path: Path | None,
               calibration: Calibration | None, page_axes: PageAxes | None) -> None:
        """Write the visible outputs from the complete pages, then remove the folder."""
        write_tiff(mask_path, self.mask, calibration, page_axes)
        if cells_path is not None and self.cells is not None:
            write_tiff(cells_path, self.cells, calibration, page_axes)
        if probability_path is not None and self.probabilities is not None:
            _flush(self.probabilities)
            self.probabilities = None  # closed before it is moved (Windows cannot move an open map)
            (self.folder / PROBABILITIES).replace(probability_path)
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def stopped(self) -> None:
        """The predict stops before the stack is complete: keep the finished pages for --skip-done, or, with
        none finished, leave nothing behind."""
        self.close()
        if self.done == 0:
            shutil.rmtree(self.folder, ignore_errors=True)

    def close(self) -> None:
        """Let go of the maps (each closes with its last reference)."""
        self.mask = self.cells = self.probabilities = None  # type: ignore[assignment]

    def _write_journal(self) -> None:
        text = json.dumps(self.journal)
        write_atomic(self.folder / JOURNAL, lambda tmp: Path(tmp).write_text(text))


def _read_journal(folder: Path) -> dict[str, Any] | None:
    try:
        journal = json.loads((folder / JOURNAL).read_text())
    except (OSError, ValueError):
        return None
    return journal if isinstance(journal, dict) and isinstance(journal.get("done"), int) else None


def _flush(array: np.ndarray) -> None:
    """Write a memory map's changed pages to disk (a view's flush reaches its file through `.base`)."""
    while array is not None and not hasattr(array, "flush"):
        array = array.base  # type: ignore[assignment]
    if array is not None:
        array.flush()
