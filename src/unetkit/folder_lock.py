"""One unetkit process at a time writes into a folder (a run, a predictions folder, a samples folder).

Two trains into one new --out both reported success while one's files replaced the other's (run.json of
one network, the resume state of another: `--resume` then failed); two predicts into one folder each
saved the record of owners it had read at its start, so the last one lost the other's entries; a second
resume deleted the temporary file the first was still writing. The lock is an advisory flock on the
folder itself (no lock file to leave behind or to mistake for an output): the kernel releases it when
the process ends, however it ends, so a killed run never leaves a folder locked. Where the platform has
no flock (Windows) or the file system refuses it, folders are not locked, as before.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from unetkit.errors import InputError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def folder_lock(folder: Path, command: str) -> Iterator[None]:
    """Hold `folder` while `command` writes into it; another process holding it is refused in one line."""
    if fcntl is None:
        yield
        return
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:  # the writes that follow report an unusable folder properly
        yield
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"{folder}: another unetkit process is writing into it now; wait until it ends, or "
                             f"{command} into another folder") from None
        except OSError:  # a file system without flock: unlocked, as on Windows
            pass
        yield
    finally:
        os.close(handle)  # closing releases the lock
