"""Method registry. A method is one module with a @register'd Method subclass (+ its search space
sweeps/spaces/<name>.yaml); modules are found by walking this folder and every plugin directory's
methods/ folder ($BENCH_PLUGINS), so there is no list to edit."""

from __future__ import annotations

from bench.errors import BenchError, choices_error
from bench.plugins import import_all
from methods.base import AttachContext, Method

REGISTRY: dict[str, Method] = {}


def register(cls):
    if cls.name in REGISTRY and type(REGISTRY[cls.name]) is not cls:
        raise BenchError(
            f"method {cls.name!r} is registered twice ({type(REGISTRY[cls.name]).__module__} and "
            f"{cls.__module__})"
        )
    REGISTRY[cls.name] = cls()
    return cls


def get_method(name: str) -> Method:
    if name not in REGISTRY:
        raise choices_error("method", name, REGISTRY)
    return REGISTRY[name]


def default_methods(role: str) -> list[str]:
    """The default method list of `bench intrinsic` ('curve') or `bench perf` ('perf')."""
    if role == "curve":
        return [m.name for m in REGISTRY.values() if m.in_default_lists and m.knob and not m.anchor]
    return [m.name for m in REGISTRY.values() if m.in_default_lists and not m.reference]


def reference_method() -> str:
    """The method every other is measured against (full fine-tuning): tables' first row, d90's target,
    benchmark ratios."""
    return next(m.name for m in REGISTRY.values() if m.reference)


def display_name(name: str) -> str:
    """A method's name as tables and figures print it; the id itself for one no longer registered."""
    return (REGISTRY[name].display_name or name) if name in REGISTRY else name


def has_role(name: str, role: str) -> bool:
    """Whether registered method `name` is the `reference` or an `anchor`; False for one no longer registered
    (runs of it may still be in a store)."""
    return name in REGISTRY and bool(getattr(REGISTRY[name], role))


def _discover() -> None:
    """Built-in modules (alphabetical: the order of `bench methods`), then plugin modules."""
    import_all(__name__, __path__, "methods", "method")


_discover()

__all__ = [
    "REGISTRY",
    "AttachContext",
    "Method",
    "default_methods",
    "display_name",
    "get_method",
    "has_role",
    "reference_method",
    "register",
]
