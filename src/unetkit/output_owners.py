"""Which input image each file of a predictions folder belongs to, kept in the folder's marker file.

Output names are input stems plus suffixes (b.png's cells are b_cells.tif, its probabilities b_prob.tif), so
one image's output can carry the name of another image's mask (the mask of an input called b_cells.tif). The
marker records, for every file predict wrote, its input's full path and the file's size and modification
time. Before any work a predict refuses to overwrite or remove a file that

- another input owns (day2/0.png after day1/0.png: one name, two images);
- the marker does not record (the user's own files, copied in after an earlier predict);
- was changed since unetkit wrote it (a mask corrected by hand in the predictions folder);

and when an image is predicted again it removes only what that image left earlier. With each file it records
what made it (`made_with`: the run's weights and the options, see predict_files.prediction_key) and the input's
size and time when it was read (`source`), so that `predict --skip-done` can tell an input whose outputs are
already there, as this call would write them, from one to predict again. An image's files are
written and recorded together, with Ctrl-C and SIGTERM held until the record is saved (predict_paths), so
a stopped predict can be run again as it was. A marker that cannot be
read as such a record is damaged and refused: its entries name the files predict may remove, so a marker
naming "../other/file" must never be acted on. Entries of markers written before 2026-12-03 (the owner's stem,
no size or time) are read as owners without a stamp.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from unetkit.data.io import CELLS_SUFFIX, PREDICTIONS_MARKER, PROB_SUFFIX, write_atomic
from unetkit.data.zarr_pages import is_zarr, zarr_stamp
from unetkit.errors import InputError

Owners = dict[str, dict[str, Any]]  # output file name -> {"input": full path (or an older marker's stem), "size", "mtime_ns"}


def owner_of(file: Path) -> str:
    """How the marker names the input an output belongs to."""
    return str(Path(file).resolve())


def owned_by(entry: dict[str, Any], file: Path) -> bool:
    """Whether a recorded output belongs to this input (an owner without a folder is an older marker's stem)."""
    owner = entry["input"]
    return owner == owner_of(file) if ("/" in owner or "\\" in owner) else owner == Path(file).stem


class OwnerIndex:
    """The recorded outputs of each input, found without scanning the whole record per input: with a scan,
    predicting 10,000 images into one folder compared (and resolved) 10^8 owners, hours of work."""

    def __init__(self, owners: Owners) -> None:
        self.owners = owners  # the record itself, which predict updates as it goes
        self._names: dict[str, list[str]] = {}
        for name, entry in owners.items():
            self._names.setdefault(entry["input"], []).append(name)

    def outputs_of(self, file: Path) -> list[str]:
        """The names the record gave this input when the index was made and still gives it (each input is
        predicted once a call, so what the call records later is never looked up)."""
        candidates = self._names.get(owner_of(file), []) + self._names.get(Path(file).stem, [])
        return [name for name in dict.fromkeys(candidates) if name in self.owners and owned_by(self.owners[name], file)]


def stamp(path: Path) -> dict[str, int]:
    """What tells a file predict wrote from the same name rewritten since (an input saved again since it was
    predicted: a zarr image's chunks too)."""
    if is_zarr(path):
        return zarr_stamp(path)
    status = os.stat(path)
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns}


def read_owners(folder: Path) -> Owners:
    """The recorded outputs of a predictions folder ({} for a marker just created, empty); a damaged marker is
    an error, never acted on."""
    marker = Path(folder) / PREDICTIONS_MARKER
    try:
        text = marker.read_text()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise _damaged(marker, str(exc)) from None
    if not text.strip():
        return {}
    try:
        record = json.loads(text)
    except ValueError:
        raise _damaged(marker, "not JSON") from None
    owners = record.get("owners", {}) if isinstance(record, dict) else None
    if not isinstance(owners, dict):
        raise _damaged(marker, "no record of owners")
    read: Owners = {}
    for name, entry in owners.items():
        entry = {"input": entry} if isinstance(entry, str) else entry  # an older marker's stem
        if Path(name).name != name or name in ("", ".", "..") or name == PREDICTIONS_MARKER or "\\" in name:
            raise _damaged(marker, f"names {name!r}, not a file of this folder")
        if not isinstance(entry, dict) or not isinstance(entry.get("input"), str):
            raise _damaged(marker, f"the entry of {name!r} is not an owner")
        read[name] = entry
    return read


def _damaged(marker: Path, why: str) -> InputError:
    return InputError(f"{marker}: damaged ({why}); this predictions folder's record cannot be trusted, so nothing in it "
                      "is overwritten: predict into a new --out")


def remove_leftovers(folder: Path, inputs: list[Path], probabilities: bool, cells: bool) -> None:
    """Remove the hidden partial files a killed predict left of these inputs' outputs (.NAME.partial, .NAME.tmpPID):
    unetkit's own temporary names, never read as results, and nobody else's while this predict holds the folder.
    One listing of the folder for all inputs (a glob per input read a folder of n files n times)."""
    planned = {name for file in inputs for name in planned_outputs(file.stem, probabilities, cells)}
    for entry in Path(folder).iterdir():
        if entry.name.startswith(".") and entry.name[1:].rpartition(".")[0] in planned and not entry.is_dir():
            entry.unlink(missing_ok=True)


def record_outputs(owners: Owners, file: Path, written: set[Path], made_with: str | None = None,
                   source: dict[str, int] | None = None) -> None:
    """Record this call's files as the input's, with what they are now (in place), what made them and the
    input's stamp when it was read."""
    extra = {} if made_with is None else {"made_with": made_with, "source": source}
    owners.update({path.name: {"input": owner_of(file), **stamp(path), **extra} for path in written})


def already_predicted(folder: Path, file: Path, index: OwnerIndex, made_with: str, probabilities: bool,
                      cells: bool) -> bool:
    """Whether the record holds every output this call would write for `file` (one mask, and the probabilities
    and cells asked for), made with the same weights and options from the input as it is now, each file still
    as written: what `predict --skip-done` leaves alone. Anything less (an older marker without `made_with`, a
    mask changed by hand, an input saved again) is predicted again."""
    names = index.outputs_of(file)
    masks = [name for name in names if name in mask_names(file.stem)]
    if len(masks) != 1 or len(names) != 1 + probabilities + cells:
        return False
    try:
        source = stamp(file)
        for name in names:
            entry = index.owners[name]
            if (entry.get("made_with") != made_with or entry.get("source") != source
                    or stamp(Path(folder) / name) != {"size": entry.get("size"), "mtime_ns": entry.get("mtime_ns")}):
                return False
    except OSError:  # a recorded output removed since: predict it again
        return False
    return True


def write_owners(folder: Path, owners: Owners) -> None:
    """Record the owners (atomically: an interrupted predict leaves the previous record, never half of one)."""
    # compact: with indent, json uses its Python encoder, 4x slower (46 ms a write for 10,000 images, once per image)
    text = json.dumps({"owners": dict(sorted(owners.items()))}, separators=(",", ":"))
    write_atomic(Path(folder) / PREDICTIONS_MARKER, lambda tmp: Path(tmp).write_text(text))


def mask_names(stem: str) -> tuple[str, str]:
    """The names an input's mask may have: PNG, or TIFF for a stack, a large image or values PNG cannot hold."""
    return f"{stem}.png", f"{stem}.tif"


def recorded_mask(folder: Path, file: Path, index: OwnerIndex) -> Path:
    """The mask the record names for an input that already_predicted found done."""
    return next(Path(folder) / name for name in index.outputs_of(file) if name in mask_names(file.stem))


def planned_outputs(stem: str, probabilities: bool, cells: bool) -> dict[str, str]:
    """Every name a predict of the input `stem` may write, with what it holds. The mask's format (PNG or TIFF)
    depends on the image, so both names are claimed: a clash is refused even where the image would have used the
    other one, which is the safe side."""
    names = dict.fromkeys(mask_names(stem), "mask")
    if probabilities:
        names[f"{stem}{PROB_SUFFIX}.tif"] = "probabilities"
    if cells:
        names[f"{stem}{CELLS_SUFFIX}.tif"] = "cells"
    return names


def refuse_clashes(folder: Path, inputs: list[Path], index: OwnerIndex, probabilities: bool, cells: bool) -> None:
    """Refuse, before any work, an output name two inputs of this call would write, and an existing file of
    `folder` this call would overwrite or remove that is not this input's earlier output as predict wrote it."""
    owners = index.owners
    claimed: dict[str, tuple[Path, str]] = {}
    for file in inputs:
        planned = planned_outputs(file.stem, probabilities, cells)
        for name, what in planned.items():
            earlier = claimed.get(name)
            if earlier is not None and earlier[0].stem != file.stem:
                raise InputError(f"{file}: its {_may_be(what, name)} {name}, the name of {earlier[0]}'s {earlier[1]}; "
                                 "predict the two into separate --out folders (or rename one)")
            claimed.setdefault(name, (file, what))
        earlier_outputs = {name: "earlier output" for name in index.outputs_of(file)}
        for name, what in {**earlier_outputs, **planned}.items():
            path = Path(folder) / name
            if not path.exists():
                continue
            entry = owners.get(name)
            replaced = f"its {_may_be(what, name)} {path}" if what != "earlier output" else f"predicting it removes {path}"
            if entry is None:
                raise InputError(f"{file}: {replaced}, a file unetkit did not write (the folder's record does not name "
                                 "it); move it out, or predict into another --out")
            if not owned_by(entry, file):
                raise InputError(f"{file}: {replaced}, which an earlier predict wrote for the image {entry['input']}; "
                                 "predict it into another --out (or rename it, or remove that file to replace it)")
            if "size" in entry and stamp(path) != {"size": entry["size"], "mtime_ns": entry.get("mtime_ns")}:
                raise InputError(f"{file}: {replaced}, which was changed after unetkit wrote it (corrected by hand, "
                                 "or the folder copied without its times? its size or time differs from the record); "
                                 "move it out to keep it, or predict into another --out")


def _may_be(what: str, name: str) -> str:
    """How a clash names the output: a mask is PNG or TIFF as the image needs, so it is only one of the names."""
    if what == "mask":
        return f"mask, if written as {'PNG' if name.endswith('.png') else 'TIFF'}, would be"
    return f"{what} would be"
