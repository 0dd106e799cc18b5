"""The folder `unetkit diffusion sample` writes: its own, never a folder of predictions, runs or the user's files.

A marker file lists what a sample call wrote. A folder holding one is an earlier call's: its listed files are
replaced by the new call's (sampling again never leaves the first call's sample_002.png or grid.png beside the
second's). Any other non-empty folder is refused before anything is drawn, and a refused call leaves no folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from unetkit.data.io import PREDICTIONS_MARKER, write_atomic
from unetkit.errors import InputError
from unetkit.run import RUN_FILE, check_writable_folder, refuse_output_among_inputs

SAMPLES_MARKER = ".unetkit-samples"


def earlier_samples(out: Path, inputs: list[Path]) -> list[str]:
    """Check `out` before any work; returns the files an earlier sample call wrote there (to be replaced)."""
    out = Path(out)
    refuse_output_among_inputs(out, inputs, "samples")  # the masks given and the run's training images
    if not out.is_dir():
        check_writable_folder(out, "samples folder")
        return []
    marker = out / SAMPLES_MARKER
    listed: list[str] = []
    if marker.is_file():
        try:
            listed = json.loads(marker.read_text())["files"]
            assert isinstance(listed, list) and all(isinstance(n, str) and Path(n).name == n for n in listed)
        except (OSError, ValueError, KeyError, TypeError, AssertionError):
            raise InputError(f"{marker}: damaged; sample into a new --out") from None
    theirs = next((p for p in sorted(out.iterdir()) if not p.name.startswith(".") and p.name not in listed), None)
    if theirs is not None:
        kind = ("a training run" if (out / RUN_FILE).is_file() else "a folder of predictions"
                if (out / PREDICTIONS_MARKER).exists() else f"a folder of files unetkit did not sample ({theirs.name})")
        raise InputError(f"--out {out}: is {kind}; choose a new or empty folder for the samples")
    check_writable_folder(out, "samples folder")
    return listed


def record_samples(out: Path, earlier: list[str], written: list[Path]) -> None:
    """After a call has written its files: remove the earlier call's that it did not write, list its own."""
    names = sorted({path.name for path in written})
    for name in set(earlier) - set(names):
        (Path(out) / name).unlink(missing_ok=True)
    text = json.dumps({"files": names}, indent=1)
    write_atomic(Path(out) / SAMPLES_MARKER, lambda tmp: Path(tmp).write_text(text))
