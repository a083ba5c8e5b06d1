"""Encoder families: one module each (bert.py, roberta.py, ...) with a registered Family subclass, found by
walking this folder and every plugin directory's families/ folder ($BENCH_PLUGINS), as methods are. Adding
an architecture is one module + its architecture configs in bench/archs/."""

from __future__ import annotations

from bench.errors import BenchError
from bench.families.base import Family
from bench.plugins import import_all

_FAMILIES: dict[str, Family] = {}


def register(cls):
    for other in _FAMILIES.values():
        if set(other.model_types) & set(cls.model_types) and type(other) is not cls:
            shared = sorted(set(other.model_types) & set(cls.model_types))
            raise BenchError(f"model type(s) {shared} claimed by families {other.name} and {cls.name}")
    _FAMILIES[cls.name] = cls()
    return cls


def families() -> dict[str, Family]:
    _discover()
    return dict(_FAMILIES)


def find(model_type: str) -> Family | None:
    """The family of a transformers model type, or None."""
    return next((fam for fam in families().values() if model_type in fam.model_types), None)


def for_model_type(model_type: str) -> Family:
    """The family of a transformers model type; a one-line refusal naming the known ones otherwise."""
    if (fam := find(model_type)) is not None:
        return fam
    known = sorted(t for f in _FAMILIES.values() for t in f.model_types)
    raise BenchError(
        f"model type {model_type!r} is not a family bench knows (choices: {', '.join(known)}); "
        "adding one is a module in bench/families/ (README, 'Extending bench')"
    )


def of(model) -> Family:
    return for_model_type(model.config.model_type)


def aliases() -> dict[str, str]:
    """Every family's hub aliases (bench alias -> hub id)."""
    return {alias: hub for fam in families().values() for alias, hub in fam.aliases.items()}


def _discover() -> None:
    if not getattr(_discover, "done", False):
        _discover.done = True
        import_all(__name__, __path__, "families", "family")


__all__ = ["Family", "aliases", "families", "find", "for_model_type", "of", "register"]
