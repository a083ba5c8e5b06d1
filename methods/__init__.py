"""Method registry. Adding a method = one module here with @register + one search-space file."""

from __future__ import annotations

from bench.errors import choices_error
from methods.base import AttachContext, Method, encoder_layers

REGISTRY: dict[str, Method] = {}


def register(cls):
    REGISTRY[cls.name] = cls()
    return cls


def get_method(name: str) -> Method:
    if name not in REGISTRY:
        raise choices_error("method", name, REGISTRY)
    return REGISTRY[name]


# Import for registration (order = the order of `bench methods` and of tables).
from methods import adapter, bitfit, full, head, lora, pasta, ptuning  # noqa: E402,F401

__all__ = ["REGISTRY", "AttachContext", "Method", "encoder_layers", "get_method", "register"]
