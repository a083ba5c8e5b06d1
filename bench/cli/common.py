"""Small helpers the command handlers share."""

from __future__ import annotations


def split_list(text):
    """'a, b,,c' -> ['a', 'b', 'c']; None/'' -> None."""
    return [x.strip() for x in text.split(",") if x.strip()] if text else None
