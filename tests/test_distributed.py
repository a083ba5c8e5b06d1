"""One run on several processes: `torchrun --nproc-per-node 2 --no-python bench run ...` trains data-parallel
through accelerate (gloo on a CPU); rank 0 alone logs to MLflow and writes the checkpoint; the global batch,
the steps and the metrics are those asked for."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import all_runs


def bench_run(argv, tmp_path, nproc=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    bench = str(Path(sys.executable).parent / "bench")
    cmd = (
        [str(Path(sys.executable).parent / "torchrun"), "--nproc-per-node", str(nproc), "--no-python", bench]
        if nproc
        else [bench]
    ) + argv
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tiny_models, glue_dir, tmp_path, monkeypatch):
    if shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("torchrun not installed beside this Python")
    common = [
        "run",
        "--method",
        "lora",
        "--model",
        tiny_models["bert"],
        "--task",
        "sst2",
        "--data-dir",
        str(glue_dir),
        "--batch-size",
        "8",
        "--max-steps",
        "6",
        "--lr",
        "5e-3",
        "--seed",
        "3",
        "--no-progress",
        "--set",
        "eval_batch_size=4",
        "--set",
        "log_every=2",
    ]
    from bench.cli import main

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert (
        main(
            [
                *common,
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'one.db'}",
                "--output-dir",
                str(tmp_path / "one"),
            ]
        )
        == 0
    )  # the one-process run, in this process
    two = bench_run(
        [*common, "--tracking-uri", f"sqlite:///{tmp_path / 'two.db'}", "--output-dir", "two"],
        tmp_path,
        nproc=2,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    (r1,) = all_runs(f"sqlite:///{tmp_path / 'one.db'}")
    runs = all_runs(f"sqlite:///{tmp_path / 'two.db'}")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # rank 1 logged nothing
    r2 = runs[0]
    assert r2.data.tags["processes"] == "2" and r1.data.tags["processes"] == "1"
    assert (
        r2.data.params["batch_size"] == "8" and r2.data.metrics["steps"] == 6
    )  # the global batch and steps asked
    assert r2.data.metrics["train_samples_per_s"] > 0
    assert len(list((tmp_path / "two").glob("*/adapter"))) == 1  # one checkpoint, by rank 0
    # Same data, same global batch: the mean of per-rank gradients is the global batch's gradient; only the
    # dropout masks differ (each rank draws its own). Tolerance: 1 in 8 of the dev examples, and 10% of the
    # final training loss.
    assert abs(r2.data.metrics["best_dev_accuracy"] - r1.data.metrics["best_dev_accuracy"]) <= 1 / 8 + 1e-9
    assert r2.data.metrics["train_loss"] == pytest.approx(r1.data.metrics["train_loss"], rel=0.1)


def test_global_batch_must_split_across_processes(tiny_models, glue_dir, tmp_path, monkeypatch, capsys):
    """Checked before anything loads or is created (as every rank of a torchrun sees it: WORLD_SIZE=2)."""
    from bench.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    assert (
        main(
            [
                "run",
                "--method",
                "full",
                "--model",
                tiny_models["bert"],
                "--task",
                "rte",
                "--data-dir",
                str(glue_dir),
                "--batch-size",
                "7",
                "--max-steps",
                "2",
                "--tracking-uri",
                uri,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err == (
        "bench: error: --batch-size 7 (the global batch) must divide evenly over the 2 processes (e.g. 6)\n"
    )
    assert not (tmp_path / "m.db").exists() or all_runs(uri) == []
