"""Which input image each file of a predictions folder belongs to, kept in the folder's marker file.

Output names are input stems plus suffixes (b.png's cells are b_cells.tif, its probabilities b_prob.tif), so
one image's output can carry the name of another image's mask (the mask of an input called b_cells.tif). The
marker records the owner of every file predict wrote: a predict refuses, before any work, to write a name
another image owns, and when an image is predicted again it removes only what that image left earlier.
A marker from before this record existed is empty: its files have no recorded owner. An owner is the input's
full path: two images of one name from different folders (day1/0.png, day2/0.png) predicted by separate calls
into one folder are different images, and the second is refused, not written over the first's mask. Markers
that recorded stems only (before 2026-12-03) still compare by stem.
"""

from __future__ import annotations

import json
from pathlib import Path

from unetkit.data.io import CELLS_SUFFIX, PREDICTIONS_MARKER, PROB_SUFFIX, write_atomic
from unetkit.errors import InputError

Owners = dict[str, str]  # output file name -> full path of the input it was predicted from (or its stem: older)


def owner_of(file: Path) -> str:
    """How the marker names the input an output belongs to."""
    return str(Path(file).resolve())


def owned_by(owner: str, file: Path) -> bool:
    """Whether a recorded owner is this input (an owner without a folder is an older marker's stem)."""
    return owner == owner_of(file) if ("/" in owner or "\\" in owner) else owner == Path(file).stem


def read_owners(folder: Path) -> Owners:
    """The recorded owners of a predictions folder's files ({} for an empty, older or damaged marker)."""
    try:
        record = json.loads((Path(folder) / PREDICTIONS_MARKER).read_text())
        owners = record.get("owners", {}) if isinstance(record, dict) else {}
        return {str(name): str(stem) for name, stem in owners.items()} if isinstance(owners, dict) else {}
    except (OSError, ValueError):
        return {}


def write_owners(folder: Path, owners: Owners) -> None:
    """Record the owners (atomically: an interrupted predict leaves the previous record, never half of one)."""
    text = json.dumps({"owners": dict(sorted(owners.items()))}, indent=1)
    write_atomic(Path(folder) / PREDICTIONS_MARKER, lambda tmp: Path(tmp).write_text(text))


def planned_outputs(stem: str, probabilities: bool, cells: bool) -> dict[str, str]:
    """Every name a predict of the input `stem` may write, with what it holds. The mask's format (PNG or TIFF)
    depends on the image, so both names are claimed: a clash is refused even where the image would have used the
    other one, which is the safe side."""
    names = {f"{stem}.png": "mask", f"{stem}.tif": "mask"}
    if probabilities:
        names[f"{stem}{PROB_SUFFIX}.tif"] = "probabilities"
    if cells:
        names[f"{stem}{CELLS_SUFFIX}.tif"] = "cells"
    return names


def refuse_clashes(folder: Path, inputs: list[Path], owners: Owners, probabilities: bool, cells: bool) -> None:
    """Refuse, before any work, an output name two inputs of this call would write, or one that another image's
    earlier predict wrote into `folder` (its file would be overwritten or removed)."""
    claimed: dict[str, tuple[Path, str]] = {}
    for file in inputs:
        for name, what in planned_outputs(file.stem, probabilities, cells).items():
            earlier = claimed.get(name)
            if earlier is not None and earlier[0].stem != file.stem:
                raise InputError(f"{file}: its {_may_be(what)} {name}, the name of {earlier[0]}'s {earlier[1]}; "
                                 "predict the two into separate --out folders (or rename one)")
            claimed.setdefault(name, (file, what))
            owner = owners.get(name)
            if owner is not None and not owned_by(owner, file) and (Path(folder) / name).exists():
                raise InputError(f"{file}: its {_may_be(what)} {Path(folder) / name}, which an earlier predict wrote "
                                 f"for the image {owner}; predict it into another --out (or rename it, or remove "
                                 "that file to replace it)")


def _may_be(what: str) -> str:
    """How a clash names the output: a mask is PNG or TIFF as the image needs, so it is only one of the names."""
    return "mask, if written as TIFF, would be" if what == "mask" else f"{what} would be"
