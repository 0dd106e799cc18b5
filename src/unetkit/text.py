"""Wording shared by messages: counts with their nouns, paths in suggested commands."""

from __future__ import annotations

import shlex


def counted(count: int, noun: str) -> str:
    """'1 step', '3 steps': the messages name counts a user reads, and '1 pages' reads wrong."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def shell_word(path: object) -> str:
    """A path as a command the message suggests must hold it, quoted where the shell would split it (`runs/day 1`):
    pasted unquoted, the suggestion failed with another error."""
    return shlex.quote(str(path))
