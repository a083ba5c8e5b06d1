"""A run killed with SIGKILL (OOM killer, lost node) does not stay RUNNING: the next bench command that
opens the store closes it as KILLED with state=lost, and the metrics logged up to the last heartbeat
flush are kept."""

import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from bench.cli import main

from support import all_runs, seeded_store


@pytest.mark.slow
def test_sigkilled_run_is_closed_by_the_next_command(tiny_models, glue_dir, tmp_path, capsys):
    uri = seeded_store(tmp_path / "mlflow.db")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "BENCH_HEARTBEAT_SECONDS": "0.5"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.cli",
            "run",
            "--method",
            "full",
            "--model",
            tiny_models["bert"],
            "--task",
            "rte",
            "--data-dir",
            str(glue_dir),
            "--max-steps",
            "100000",
            "--batch-size",
            "4",
            "--set",
            "log_every=1",
            "--tracking-uri",
            uri,
            "--output-dir",
            str(tmp_path / "out"),
            "--no-progress",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    c = MlflowClient(uri)
    deadline = time.time() + 120
    run = None
    while time.time() < deadline:  # wait until the run exists and a flush has reached the store
        time.sleep(0.5)
        runs = all_runs(uri) if (tmp_path / "mlflow.db").exists() else []
        if runs and c.get_metric_history(runs[0].info.run_id, "train_loss"):
            run = runs[0]
            break
    assert run is not None, "the run never logged a loss"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert c.get_run(run.info.run_id).info.status == "RUNNING"  # nothing closed it: SIGKILL runs no handler
    logged = len(c.get_metric_history(run.info.run_id, "train_loss"))
    assert main(["report", "table", "--model", "x", "--tracking-uri", uri, "--all-runs"]) == 2  # any command
    capsys.readouterr()
    after = c.get_run(run.info.run_id)
    assert after.info.status == "KILLED" and after.data.tags["state"] == "lost"
    assert "is gone" in after.data.tags["error"]
    assert len(c.get_metric_history(run.info.run_id, "train_loss")) >= logged > 0  # flushed metrics kept


def test_live_runs_are_not_closed(tmp_path):
    """A RUNNING run whose process is alive (this test) stays RUNNING."""
    import socket

    from bench import tracking

    uri = seeded_store(tmp_path / "mlflow.db")
    tracking.check_reachable(uri)
    with tracking.tracked_run(uri, "e", "r", {}) as t:
        tracking._REAPED.discard(uri)
        assert tracking.close_lost_runs(uri) == []
        run = MlflowClient(uri).get_run(t.run_id)
        assert run.info.status == "RUNNING" and run.data.tags["host"] == socket.gethostname()
