"""Tokenisation, cached per (tokenizer, task, split content, max length)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.data import Examples
from bench.kinds import IGNORE_INDEX  # noqa: F401 - re-exported for callers
from bench.ragged import Ragged
from bench.tasks import Task

CACHE_VERSION = 5  # bump when the encoded layout changes


def default_cache_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "bench"))


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of the tokenizer's full definition, computed once per tokenizer object (serialising a
    30k-entry vocabulary costs more than loading a cached split)."""
    cached = getattr(tokenizer, "_bench_fingerprint", None)
    if cached is not None:
        return cached
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # Truncation/padding state changes with every call: it is not part of the tokenizer's identity.
        # Cut those two values out of the compact JSON instead of re-serialising it sorted (25x slower);
        # should the layout ever differ, the state stays in and only costs a cache miss.
        body = backend.to_str()
        spec = json.loads(body)
        for key in ("truncation", "padding"):
            body = body.replace(f'"{key}":' + json.dumps(spec.get(key), separators=(",", ":")), "", 1)
    else:
        body = repr(sorted(tokenizer.get_vocab().items()))
    extra = f"{type(tokenizer).__name__}|{getattr(tokenizer, 'add_prefix_space', None)}"
    if getattr(tokenizer, "stands_in_for", None):  # a random init's stand-in may drop token types
        extra += f"|{tokenizer.model_input_names}"
    fingerprint = hashlib.sha1((body + extra).encode()).hexdigest()
    tokenizer._bench_fingerprint = fingerprint
    return fingerprint


def split_rows(data: dict, rows) -> dict:
    """The given rows of every column (Ragged or array), in that order."""
    out = {}
    for key, col in data.items():
        out[key] = Ragged.from_rows([col[i] for i in rows]) if isinstance(col, Ragged) else col[rows]
    return out


def encode(task: Task, examples: Examples, tokenizer, max_length: int) -> dict:
    """Columns (Ragged) for the task's kind: see TaskKind.encode."""
    return task.task_kind.encode(task, examples, tokenizer, max_length)


def _to_arrays(data: dict) -> dict[str, np.ndarray]:
    arrays = {}
    for key, col in data.items():
        if isinstance(col, Ragged):
            arrays[f"{key}.flat"], arrays[f"{key}.offsets"] = col.flat, col.offsets
        else:
            arrays[key] = col
    return arrays


def _from_arrays(arrays: dict[str, np.ndarray]) -> dict:
    data = {}
    for key, arr in arrays.items():
        name, _, part = key.partition(".")
        if part == "flat":
            data[name] = Ragged(arr, arrays[f"{name}.offsets"])
        elif not part:
            data[name] = arr
    return data


def _consistent(data: dict) -> bool:
    """Every column has one row per example and ragged offsets cover their flat arrays."""
    sizes = set()
    for col in data.values():
        if isinstance(col, Ragged):
            if col.offsets[-1] != len(col.flat) or (np.diff(col.offsets) < 0).any():
                return False
        sizes.add(len(col))
    return len(sizes) == 1 and "input_ids" in data and "labels" in data


def cached_encode(
    task: Task, split: str, examples: Examples, tokenizer, max_length: int, cache_dir: Path | None = None
) -> dict:
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = hashlib.sha1(
        f"{CACHE_VERSION}|{tokenizer_fingerprint(tokenizer)}|{task.name}|{split}|{examples.fingerprint}"
        f"|{max_length}".encode()
    ).hexdigest()
    path = cache_dir / "encoded" / f"{task.name}-{split}-{key[:16]}.npz"
    if path.is_file():
        try:  # the zip container checks every member's CRC: a truncated or altered entry fails here
            with np.load(path, allow_pickle=False) as z:
                data = _from_arrays({k: z[k] for k in z.files})
            if _consistent(data):
                return data
            raise ValueError("columns of different lengths")
        except Exception as e:  # noqa: BLE001 - any damage: rebuild, never crash later runs
            print(
                f"bench: warning: tokenisation cache entry {path} is damaged ({type(e).__name__}); "
                "rebuilding it",
                file=sys.stderr,
            )
            path.unlink(missing_ok=True)
    data = encode(task, examples, tokenizer, max_length)
    try:  # write-then-rename: a crash never leaves a half-written cache entry
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **_to_arrays(data))
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs speed
    return data
