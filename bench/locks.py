"""An exclusive lock on a file, for creating shared stores (SQLite tracking and sweep databases) safely
when several processes start at once. POSIX advisory locks (fcntl): the machines bench runs on."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
