"""A stack's outputs, filled page by page in a hidden folder of the predictions folder, and resumable.

Held in memory, a stack's mask and cell ids grew with the stack (a 500-page 4096 x 4096 EM volume: 8 GiB of
mask and 16 of cells before the first byte was written), and a predict stopped on page 480 of 500 kept nothing.
Here each page's mask, cell ids and probabilities go into memory-mapped files in OUT/.NAME.unetkit-pages/ as the
page is predicted, and a journal there records how many pages are complete (written after their bytes are
flushed to disk, so it never counts a page that is not there). The files are allocated in full when made, so
a disk that fills is an error naming the output, not a SIGBUS. An output that `write_tiff` would store
uncompressed (ImageJ's layout, which carries the input's page axes and pixel size) is filled in that very layout
and moved into place at the end; one it compresses is filled as a .npy array and compressed into place. When the
last page is done, `finish` does that and removes the folder: nothing in OUT looks like a result before it is
one. A predict stopped midway (Ctrl-C, SIGTERM, a damaged page, a killed process) leaves the folder;
`predict --skip-done`, with the same run and options on the same unchanged input file, goes on from the first
page not done. Without --skip-done, or with anything changed, the stack starts again from its first page.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import tifffile

from unetkit.data.calibration import Calibration, PageAxes
from unetkit.data.io import CELLS_SUFFIX, PROB_SUFFIX, reserve_disk_space, tiff_layout, write_atomic, write_tiff
from unetkit.errors import InputError
from unetkit.output_owners import stamp

WORK_SUFFIX = ".unetkit-pages"  # OUT/.NAME.unetkit-pages/: a stack's outputs while its pages are predicted
JOURNAL = "pages.json"
MASK, CELLS, PROBABILITIES = "mask", "cells", "probabilities.tif"


def work_folder(out: Path, stem: str) -> Path:
    """Where the pages of the stack `stem` are kept until the stack is complete."""
    return Path(out) / f".{stem}{WORK_SUFFIX}"


def unfinished_stacks(out: Path) -> list[tuple[Path, int, int, int]]:
    """(input file, pages done, pages, bytes the folder holds) of each stack a stopped predict left part-done in
    `out`; unreadable journals are left out."""
    found = []
    for folder in sorted(Path(out).glob(f".*{WORK_SUFFIX}")):
        try:
            journal = json.loads((folder / JOURNAL).read_text())
            identity = journal["identity"]
            held = sum(path.stat().st_size for path in folder.iterdir())
            found.append((Path(identity["input"]), int(journal["done"]), int(identity["mask"][0][0]), held))
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue
    return found


def settle_kept_pages(out: Path, files: list[Path], made_with: str | None) -> None:
    """Before any work, the pages stopped predicts kept of these inputs' stacks: another image's of the same name
    is refused (predicting this one would discard them); those this call will not go on from (`made_with` None:
    without --skip-done; or made with other weights or options, or from the input as it was) are removed now,
    so that the space check counts as free only what a resume fills."""
    for file in files:
        folder = work_folder(out, file.stem)
        if not folder.exists():
            continue
        journal, identity = _identity(folder)
        owner = identity.get("input")
        if isinstance(owner, str) and owner != str(Path(file).resolve()):
            raise InputError(f"{file}: {out} keeps the {journal.get('done')} finished pages of {owner}, another image "
                             f"of this name, from a stopped predict; finish that one (predict it with --skip-done), "
                             f"delete {folder}, or choose another --out")
        try:
            same_input = identity.get("source") == stamp(file)
        except OSError:
            same_input = False
        if made_with is None or identity.get("made_with") != made_with or not same_input:
            shutil.rmtree(folder, ignore_errors=True)


def discard_kept_pages(out: Path, file: Path) -> None:
    """Remove the pages a stopped predict kept of the stack `file` (its folder names this very file)."""
    folder = work_folder(out, file.stem)
    if _identity(folder)[1].get("input") == str(Path(file).resolve()):
        shutil.rmtree(folder, ignore_errors=True)


class StackOutputs:
    """The memory-mapped outputs of one stack being predicted, and how many of its pages are complete.

    `mask`: P x H x W[ x 3] in the run's mask dtype; `probabilities`: P x K x H x W float32 (with --prob), a TIFF
    already laid out as the final NAME_prob.tif; `cells`: P x H x W cell ids (with --instances), uint16 until the ids
    need uint32 (`widen_cells`). `done`: pages complete; `cell_offset`, `objects`: what the cell labelling carries
    from page to page. `calibration`, `page_axes`: how the outputs declare the input's pixel size and T/Z."""

    def __init__(self, folder: Path, journal: dict[str, Any], mask: np.ndarray, cells: np.ndarray | None,
                 probabilities: np.ndarray | None, calibration: Calibration | None, page_axes: PageAxes | None,
                 cells_output: Path | None = None) -> None:
        self.folder = folder
        self.cells_output = cells_output  # NAME_cells.tif, named when the widened ids find the disk full
        self.journal = journal
        self.mask = mask
        self.cells = cells
        self.probabilities = probabilities
        self.calibration = calibration
        self.page_axes = page_axes

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
    def begin(cls, out: Path, file: Path, identity: dict[str, Any], mask_shape: tuple[int, ...], mask_dtype: Any,
              probability_shape: tuple[int, ...] | None, probability_store: Callable[[Path], np.ndarray],
              cells: bool, resume: bool, calibration: Calibration | None = None,
              page_axes: PageAxes | None = None) -> "StackOutputs":
        """The outputs of the stack `file`: the pages a stopped predict left, when `resume` and the journal's
        identity (the input file, the prediction key and the input's size and time in `identity`, the shapes) is
        this call's; else new, empty ones (anything left of an earlier call is removed). `probability_store(path)`:
        a new memory-mapped TIFF of the probabilities (P x K x H x W), laid out as the final NAME_prob.tif."""
        folder = work_folder(out, file.stem)
        identity = {**identity, "input": str(Path(file).resolve()), "mask": [list(mask_shape), np.dtype(mask_dtype).str],
                    "probabilities": None if probability_shape is None else list(probability_shape), "cells": cells}
        journal = _read_journal(folder)
        cells_output = out / f"{file.stem}{CELLS_SUFFIX}.tif"
        if resume and journal is not None and journal.get("identity") == identity:
            try:
                return cls._open(folder, journal, calibration, page_axes, cells_output)
            except (OSError, ValueError):  # a file of the folder damaged or gone: start the stack again
                pass
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        outputs = cls(folder, {"identity": identity, "done": 0, "cell_offset": 0, "objects": None}, None, None, None,  # type: ignore[arg-type]
                      calibration, page_axes, cells_output)
        try:
            outputs.mask = outputs._create(MASK, mask_shape, mask_dtype, out / f"{file.stem}.tif")
            if cells:
                outputs.cells = outputs._create(CELLS, mask_shape[:3], np.uint16, outputs.cells_output)
            if probability_shape is not None:
                outputs.probabilities = probability_store(folder / PROBABILITIES)
                reserve_disk_space(folder / PROBABILITIES, out / f"{file.stem}{PROB_SUFFIX}.tif")
            outputs._write_journal()
        except BaseException:
            outputs.close()
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return outputs

    @classmethod
    def _open(cls, folder: Path, journal: dict[str, Any], calibration: Calibration | None,
              page_axes: PageAxes | None, cells_output: Path) -> "StackOutputs":
        identity = journal["identity"]
        shape, dtype = tuple(identity["mask"][0]), np.dtype(identity["mask"][1])
        mask = _open_store(folder, MASK, shape)
        if mask.dtype != dtype:
            raise ValueError("the mask's dtype is not the journal's")
        cells = _open_store(folder, CELLS, shape[:3]) if identity["cells"] else None
        probabilities = None
        if identity["probabilities"] is not None:
            probabilities = tifffile.memmap(folder / PROBABILITIES, mode="r+").reshape(identity["probabilities"])
        return cls(folder, journal, mask, cells, probabilities, calibration, page_axes, cells_output)

    def _create(self, name: str, shape: tuple[int, ...], dtype: Any, output: Path) -> np.ndarray:
        """A new memory-mapped file for the output `name`, in its final TIFF layout when write_tiff would store it
        uncompressed, else as a .npy array; allocated in full (`output`: the file it becomes, for the error)."""
        stored, options = tiff_layout(shape, dtype, self.calibration, self.page_axes)
        if "compression" in options or np.dtype(dtype) == bool:
            path = self.folder / f"{name}.npy"
            array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        else:
            path = self.folder / f"{name}.tif"
            array = tifffile.memmap(path, shape=stored, dtype=dtype, **options).reshape(shape)
        reserve_disk_space(path, output)
        return array

    def widen_cells(self, ids: np.ndarray) -> np.ndarray:
        """The cell ids as uint32, copied page by page into a new file (the ids passed 65,535), allocated in full
        (a full disk: an error naming NAME_cells.tif), named cells.npy once the copy is on disk, and only then the
        uint16 file removed (a stop in between leaves both: _open_store takes the .npy)."""
        wide = self.folder / f"wide-{CELLS}.npy"
        wider = np.lib.format.open_memmap(wide, mode="w+", dtype=np.uint32, shape=ids.shape)
        try:
            reserve_disk_space(wide, self.cells_output or wide)
        except BaseException:
            del wider
            wide.unlink(missing_ok=True)
            raise
        for index in range(len(ids)):
            wider[index] = ids[index]
        wider.flush()
        self.cells = None
        del ids
        wide.replace(self.folder / f"{CELLS}.npy")
        (self.folder / f"{CELLS}.tif").unlink(missing_ok=True)
        self.cells = wider
        return wider

    def page_done(self, cell_offset: int = 0, objects: bool | None = None) -> None:
        """One more page complete: its bytes flushed to disk, then counted in the journal."""
        for array in (self.mask, self.cells, self.probabilities):
            if array is not None:
                _flush(array)
        self.journal.update(done=self.done + 1, cell_offset=cell_offset, objects=objects)
        self._write_journal()

    def finish(self, mask_path: Path, cells_path: Path | None, probability_path: Path | None) -> None:
        """Put the visible outputs in place from the complete pages, then remove the folder."""
        self._publish(MASK, self.mask, mask_path)
        if cells_path is not None and self.cells is not None:
            self._publish(CELLS, self.cells, cells_path)
        if probability_path is not None and self.probabilities is not None:
            _flush(self.probabilities)
            self.probabilities = None  # closed before it is moved (Windows cannot move an open map)
            (self.folder / PROBABILITIES).replace(probability_path)
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _publish(self, name: str, array: np.ndarray, target: Path) -> None:
        """An output filled in its final layout is moved into place; a .npy one is compressed into it."""
        filled = self.folder / f"{name}.tif"
        if filled.exists():
            _flush(array)
            filled.replace(target)
        else:
            write_tiff(target, array, self.calibration, self.page_axes)

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


def _open_store(folder: Path, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """An output's memory-mapped file as StackOutputs._create made it (a TIFF in its final layout, or .npy; both
    when a stop came as widened cell ids replaced the TIFF: the .npy, the wider, holds every page done)."""
    if (folder / f"{name}.tif").exists() and (folder / f"{name}.npy").exists():
        (folder / f"{name}.tif").unlink()
    if (folder / f"{name}.tif").exists():
        return tifffile.memmap(folder / f"{name}.tif", mode="r+").reshape(shape)
    array = np.load(folder / f"{name}.npy", mmap_mode="r+")
    if array.shape != shape:
        raise ValueError(f"{name}: not the journal's shape")
    return array


def _identity(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A work folder's journal and the identity it records ({} for what is missing or damaged)."""
    journal = _read_journal(folder) or {}
    identity = journal.get("identity")
    return journal, identity if isinstance(identity, dict) else {}


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
