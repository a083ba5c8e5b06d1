"""Task kinds as strategies: each module here defines one TaskKind subclass (classification,
regression, tagging) owning how that kind of task is encoded, which head it gets, how logits become
predictions, its metrics and its trivial baseline. Found by walking this package."""

from __future__ import annotations

import importlib
import pkgutil

from bench.kinds.base import IGNORE_INDEX, TaskKind

_KINDS: dict[str, TaskKind] = {}


def register(cls):
    _KINDS[cls.name] = cls()
    return cls


def get_kind(name: str) -> TaskKind:
    if not _KINDS:
        for info in pkgutil.iter_modules(__path__):
            if info.name != "base":
                importlib.import_module(f"{__name__}.{info.name}")
    return _KINDS[name]


__all__ = ["IGNORE_INDEX", "TaskKind", "get_kind", "register"]
