"""What a run ran on: git state of the harness, package versions, device."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "bench",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "mlflow",
    "optuna",
    "datasets",
    "scikit-learn",
    "scipy",
    "seqeval",
)


@functools.lru_cache(maxsize=1)
def git_state() -> dict:
    """The harness's git commit and whether its tracked files differ from it; read once per process (the
    run tags and MLflow's source tags both ask for it)."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = (
            subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            != ""
        )
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": "unknown", "git_dirty": "unknown"}
    return {"git_sha": sha or "unknown", "git_dirty": str(dirty).lower() if sha else "unknown"}


def versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def device_description() -> str:
    import torch  # lazy: this module is on the import path of `bench --help`

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def environment() -> dict:
    return {
        **git_state(),
        **{f"version.{k}": v for k, v in versions().items()},
        "device": device_description(),
        "python": platform.python_version(),
    }
