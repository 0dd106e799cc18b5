"""The one exception type users see.

Anything raised as `InputError` is a problem with what the user gave us (a path,
a file, an option): the CLI prints its message as one line and exits with 2.
Every message names the file or option and says what to do about it.
"""


class InputError(Exception):
    """Bad input from the user: a missing or corrupt file, a mismatch, a bad option."""


class WriteError(InputError):
    """An output could not be written (a full or read-only disk, a folder gone): the previous file is unchanged,
    so a run that hit it can continue (`train --resume`) once the disk is fixed, unlike bad data. `path` and
    `reason` (the system's words) let a caller give its own advice."""

    def __init__(self, message: str, path: object = None, reason: str = "") -> None:
        super().__init__(message)
        self.path, self.reason = path, reason
