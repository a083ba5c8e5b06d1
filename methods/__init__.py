"""Method registry. A method is one module with a @register'd Method subclass (+ its search space
sweeps/spaces/<name>.yaml); modules are found by walking this folder and every plugin directory's
methods/ folder ($BENCH_PLUGINS), so there is no list to edit."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys

from bench.errors import BenchError, choices_error
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
    from pathlib import Path

    from bench.plugins import plugin_dirs

    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
    for directory in plugin_dirs():
        for path in sorted(Path(directory, "methods").glob("*.py")):
            module_name = f"bench_plugin_methods.{path.stem}"
            if module_name in sys.modules:
                continue
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as e:  # a broken plugin is named, not a traceback
                del sys.modules[module_name]
                raise BenchError(f"method plugin {path} failed to load ({type(e).__name__}: {e})") from None


_discover()

__all__ = ["REGISTRY", "AttachContext", "Method", "get_method", "register"]
