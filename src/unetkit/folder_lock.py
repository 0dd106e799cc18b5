"""One unetkit command at a time writes into a folder (a run folder, a predictions folder).

Two trains into one new --out both reported success while one's files replaced the other's (run.json of
one network, the resume state of another: `--resume` then failed); two predicts into one folder each
saved the record of owners it had read at its start, so the last one lost the other's entries; a second
resume deleted the temporary file the first was still writing. The lock is an advisory flock on the
folder itself (no lock file to leave behind or to mistake for an output): the kernel releases it when
the process ends, however it ends, so a killed run never leaves a folder locked. Where the platform has
no flock (Windows) or the file system refuses it, folders are not locked, as before.

interrupts_deferred holds Ctrl-C and SIGTERM for the moment files and their record are written together.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Iterator

from unetkit.errors import InputError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def folder_lock(folder: Path, advice: str) -> Iterator[None]:
    """Hold `folder` while a command writes into it; when another holds it (another process, or another call of
    this one), refuse in one line ending in `advice`: what the user can do instead."""
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
            raise InputError(f"{folder}: another unetkit command is writing into it now; {advice}") from None
        except OSError:  # a file system without flock: unlocked, as on Windows
            pass
        yield
    finally:
        os.close(handle)  # closing releases the lock


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C, SIGTERM or SIGHUP during the block takes effect at its end, through the handler that was in place: files
    and the record that names them land together (a predict stopped between renaming a mask into place and
    recording it left a file the rerun refused as not unetkit's). Keep the block short: it is the commit, not
    the work. Only the main thread can handle signals; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    held = [number for number in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None))
            if number is not None and signal.getsignal(number) is not signal.SIG_IGN]  # nohup's hangup stays ignored
    previous = {number: signal.signal(number, lambda number, frame: received.append(number)) for number in held}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)  # None: set outside Python
        if received:
            signal.raise_signal(received[0])  # the restored handler acts on it now
