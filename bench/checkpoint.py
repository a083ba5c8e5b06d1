"""Adapter-only checkpoints: safetensors of the stored parameters + the run's config as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bench.errors import BenchError

WEIGHTS, META = "adapter.safetensors", "bench_adapter.json"


def stored_state(model, stored_names: set[str]) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in model.named_parameters() if n in stored_names}


def save(directory: Path, model, stored_names: set[str], meta: dict) -> int:
    """Writes the checkpoint; returns the weights file's size in bytes."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {n: t.contiguous().cpu() for n, t in stored_state(model, stored_names).items()}
    save_file(state, str(directory / WEIGHTS))
    from bench.redact import redact_tree

    (directory / META).write_text(json.dumps(redact_tree(meta), indent=2, default=str))
    return (directory / WEIGHTS).stat().st_size


def read_meta(directory: Path) -> dict:
    path = Path(directory) / META
    if not path.is_file():
        raise BenchError(f"not a bench checkpoint (no {META}): {directory}")
    return json.loads(path.read_text())


def load_into(model, directory: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(Path(directory) / WEIGHTS))
    names = dict(model.named_parameters())
    unknown = sorted(set(state) - set(names))
    if unknown:
        raise BenchError(f"checkpoint {directory} holds {len(unknown)} parameters this model lacks, "
                         f"e.g. {unknown[0]}")
    with torch.no_grad():
        for n, t in state.items():
            names[n].copy_(t)
