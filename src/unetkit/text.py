"""Wording shared by messages: counts with their nouns."""

from __future__ import annotations


def counted(count: int, noun: str) -> str:
    """'1 step', '3 steps': the messages name counts a user reads, and '1 pages' reads wrong."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
