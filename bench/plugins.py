"""Where bench finds what it can be extended with: its own folders first, then every directory named
in $BENCH_PLUGINS (os.pathsep-separated). A plugin directory may hold methods/*.py (method modules),
spaces/*.yaml (their search spaces) and tasks/*.yaml (task entries); nothing else needs editing."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "BENCH_PLUGINS"


def plugin_dirs() -> list[Path]:
    return [Path(p).expanduser() for p in os.environ.get(ENV, "").split(os.pathsep) if p.strip()]


def files(builtin: Path, sub: str, pattern: str) -> list[Path]:
    """The built-in folder's matches (sorted), then each plugin directory's `sub` folder's."""
    found = sorted(builtin.glob(pattern))
    for d in plugin_dirs():
        found += sorted((d / sub).glob(pattern))
    return found
