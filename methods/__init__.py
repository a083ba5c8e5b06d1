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
        raise BenchError(f"method {cls.name!r} is registered twice ({type(REGISTRY[cls.name]).__module__} and "
                         f"{cls.__module__})")
    REGISTRY[cls.name] = cls()
    return cls


def get_method(name: str) -> Method:
    if name not in REGISTRY:
        raise choices_error("method", name, REGISTRY)
    return REGISTRY[name]


def _discover() -> None:
    """Built-in modules (alphabetical: the order of `bench methods`), then plugin modules."""
    import_all(__name__, __path__, "methods", "method")


_discover()

__all__ = ["REGISTRY", "AttachContext", "Method", "get_method", "register"]
