"""Adapter-only checkpoints: safetensors of the stored parameters + the run's config as JSON."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from bench import tracking
from bench.errors import BenchError, first_line
from bench.logs import quiet_libraries
from bench.redact import redact_tree

WEIGHTS, META = "adapter.safetensors", "bench_adapter.json"


def tensors(model) -> dict[str, torch.Tensor]:
    """Every parameter and buffer by name (a method may store buffers: a peft tuner's projections)."""
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def stored_state(model, stored_names: set[str]) -> dict[str, torch.Tensor]:
    return {n: t.detach() for n, t in tensors(model).items() if n in stored_names}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save(directory: Path, model, stored_names: set[str], meta: dict) -> int:
    """Writes the checkpoint (weights, then the metadata that records their sha256); returns the weights
    file's size in bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {n: t.contiguous().cpu() for n, t in stored_state(model, stored_names).items()}
    try:
        save_file(state, str(directory / WEIGHTS))
    except SafetensorError as e:  # its I/O errors are not OSErrors: give them back as one, with the path
        (directory / WEIGHTS).unlink(missing_ok=True)  # no half-written weights left behind
        code = re.search(r"os error (\d+)", str(e))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(directory / WEIGHTS)) from e
    meta = {**meta, "weights_sha256": sha256(directory / WEIGHTS)}

    (directory / META).write_text(json.dumps(redact_tree(meta), indent=2, default=str))
    return (directory / WEIGHTS).stat().st_size


def _meta_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise BenchError(f"checkpoint metadata {path} is not valid JSON ({type(e).__name__})") from None
    if not isinstance(meta, dict):
        raise BenchError(f"checkpoint metadata {path} is not a JSON object")
    return meta


def read_meta(directory: Path) -> dict:
    path = Path(directory) / META
    if not path.is_file():
        raise BenchError(f"not a bench checkpoint (no {META}): {directory}")
    meta = _meta_json(path)
    missing = [k for k in ("config", "method", "task") if k not in meta]
    if missing:
        raise BenchError(f"checkpoint metadata {path} lacks {missing[0]!r}: not a bench checkpoint")
    return meta


def verify(directory: Path) -> Path:
    """The weights file, checked against the sha256 its metadata recorded at save (before any model loads)."""
    weights = Path(directory) / WEIGHTS
    if not weights.is_file():
        raise BenchError(f"checkpoint {directory} has no {WEIGHTS}")
    meta_path = Path(directory) / META
    expected = _meta_json(meta_path).get("weights_sha256") if meta_path.is_file() else None
    if expected is not None and sha256(weights) != expected:
        raise BenchError(
            f"checkpoint {weights} is corrupted: its sha256 differs from the one recorded at save"
        )
    return weights


def load_into(model, directory: Path) -> None:
    """Load the stored parameters after checking the weights file against the sha256 in the metadata."""
    weights = verify(directory)
    try:
        state = load_file(str(weights))
    except Exception as e:  # noqa: BLE001 - truncated or not safetensors (a checkpoint without a sha256)
        raise BenchError(f"checkpoint {weights} is not readable ({first_line(e)})") from None
    names = tensors(model)
    unknown = sorted(set(state) - set(names))
    if unknown:
        raise BenchError(
            f"checkpoint {directory} holds {len(unknown)} parameters this model lacks, e.g. {unknown[0]}"
        )
    with torch.no_grad():
        for n, t in state.items():
            if names[n].shape != t.shape:
                raise BenchError(
                    f"checkpoint {directory}: {n} has shape {tuple(t.shape)}, the model's is "
                    f"{tuple(names[n].shape)} (another model or method options)"
                )
            names[n].copy_(t)


def download_run_checkpoint(run_id: str, tracking_uri: str | None, dst: str | Path) -> Path:
    """The run's adapter artifact, downloaded under `dst`."""
    quiet_libraries()
    uri = tracking.resolve_uri(tracking_uri)
    tracking.check_existing(uri)
    tracking.check_reachable(uri)
    c = tracking.client(uri)
    try:
        c.get_run(run_id)
    except Exception:
        raise BenchError(f"no MLflow run {run_id!r} in {tracking.redact(uri)}") from None
    try:
        Path(dst).mkdir(parents=True, exist_ok=True)
        return Path(c.download_artifacts(run_id, "adapter", str(dst)))
    except Exception as e:
        raise BenchError(f"run {run_id} has no adapter artifact ({type(e).__name__})") from None


@contextlib.contextmanager
def checkpoint_dir(run_id: str | None, directory: str | None, tracking_uri: str | None):
    """The adapter directory of --run (downloaded into a temporary directory removed afterwards) or
    --checkpoint."""
    if bool(run_id) == bool(directory):
        raise BenchError("needs exactly one of --run RUN_ID or --checkpoint DIR")
    if directory:
        yield Path(directory)
        return
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        yield download_run_checkpoint(run_id, tracking_uri, tmp)
