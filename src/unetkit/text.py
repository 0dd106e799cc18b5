"""Wording shared by messages: counts with their nouns, paths in suggested commands, tables of names."""

from __future__ import annotations

import shlex


def counted(count: int, noun: str) -> str:
    """'1 step', '3 steps': the messages name counts a user reads, and '1 pages' reads wrong."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def shell_word(path: object) -> str:
    """A path as a command the message suggests must hold it, quoted where the shell would split it (`runs/day 1`):
    pasted unquoted, the suggestion failed with another error."""
    return shlex.quote(str(path))


def printable(text: str) -> str:
    """`text` with its unprintable characters (a newline or tab in a file name) written as escapes: one raw in a
    table cell broke its row in two and shifted every column after it. Other Unicode stays as it is."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def aligned_table(rows: list[list[str]], right: bool = False) -> str:
    """Rows of cells as columns two spaces apart, left-aligned (names) or right-aligned (figures)."""
    cells = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(cell.rjust(w) if right else cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in cells)
