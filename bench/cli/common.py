"""Small helpers the command handlers share."""

from __future__ import annotations

import os
from pathlib import Path

from bench.errors import BenchError


def split_list(text):
    """'a, b,,c' -> ['a', 'b', 'c']; None/'' -> None."""
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def write_atomically(path: Path, text: str) -> None:
    """Write-then-rename: an interrupted write leaves the old file whole, never half of the new one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        raise BenchError(f"cannot write {path} ({e.strerror or e})") from None
