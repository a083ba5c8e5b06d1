"""Behaviour that differs between releases of the libraries bench supports, decided by asking the installed
library rather than by comparing version numbers (a backport or a revert would fool a version check)."""

from __future__ import annotations

import importlib.metadata
import inspect


def _parameters(fn) -> set[str]:
    return set(inspect.signature(fn).parameters)


def cache_argument(backbone_cls) -> str:
    """The keyword an encoder's forward takes precomputed keys/values under: `cache` since transformers 5.24
    (`past_key_values` deprecated, to be removed in 5.40), `past_key_values` before."""
    return "cache" if "cache" in _parameters(backbone_cls.forward) else "past_key_values"


def peft_prefix_tuning_problem(task_model_cls, backbone_cls) -> str | None:
    """Why peft's prefix tuning cannot run on this model class with the installed transformers and peft, or
    None when it can. peft feeds the prefix through a `past_key_values` argument of the task model's or the
    backbone's forward (peft_model.py, _prefix_tuning_forward); transformers 5.24 renamed it `cache`."""
    if any("past_key_values" in _parameters(c.forward) for c in (task_model_cls, backbone_cls)):
        return None
    peft, transformers = (importlib.metadata.version(p) for p in ("peft", "transformers"))
    renamed = " (renamed `cache`)" if "cache" in _parameters(backbone_cls.forward) else ""
    return (
        f"peft {peft} prefix tuning needs a `past_key_values` argument, which "
        f"{backbone_cls.__name__}.forward in transformers {transformers} does not take{renamed}"
    )
