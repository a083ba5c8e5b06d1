"""Run every registered method once on a small fixed configuration (MiniLM, RTE, a few steps) and write
what each run logged (metrics, params, tags; times, ids and machine details left out) as JSON, so that
a refactoring can be checked value by value against the tree before it:

    python scripts/behaviour-snapshot.py ../shared/data before.json   # on the old tree
    python scripts/behaviour-snapshot.py ../shared/data after.json    # on the new one
    diff before.json after.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

VOLATILE = (
    "seconds",
    "per_s",
    "samples_s",
    "time",
    "memory",
    "mib",
    "bytes",
    "host",
    "pid",
    "git",
    "mlflow.",
    "run_id",
    "started",
    "version",
    "command",
    "user",
    "python",
    "torch",
    "cuda",
    "url",
    "checkpoint",
    "tracking_uri",
    "output_dir",
    "cache_dir",
    "heartbeat",
    "run_dir",
)


def stable(d: dict) -> dict:
    return {k: v for k, v in sorted(d.items()) if not any(word in k.lower() for word in VOLATILE)}


def main(data_dir: str, out: str) -> None:
    from mlflow.tracking import MlflowClient

    from methods import REGISTRY

    tmp = Path(tempfile.mkdtemp())
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    for name in REGISTRY:
        cmd = [
            sys.executable,
            "-m",
            "bench.cli",
            "run",
            "--method",
            name,
            "--task",
            "rte",
            "--data-dir",
            data_dir,
            "--tracking-uri",
            uri,
            "--output-dir",
            str(tmp / "runs"),
            "--no-progress",
            "--set",
            "max_steps=3",
            "--set",
            "max_train_samples=48",
            "--set",
            "batch_size=16",
            "--set",
            "max_length=64",
        ]
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent.parent,
            env={**__import__("os").environ, "BENCH_CACHE": str(tmp / "cache")},
        )
        print(name, "exit", done.returncode, file=sys.stderr)
    c = MlflowClient(uri)
    runs = c.search_runs([e.experiment_id for e in c.search_experiments()])
    snapshot = {
        r.data.tags.get("method", r.info.run_name): {
            "status": r.info.status,
            "metrics": stable(r.data.metrics),
            "params": stable(r.data.params),
            "tags": stable(r.data.tags),
        }
        for r in runs
    }
    Path(out).write_text(json.dumps(dict(sorted(snapshot.items())), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
