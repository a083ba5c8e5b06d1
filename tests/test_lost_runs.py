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


def container(uri):
    from bench import record, tracking

    tracking.check_reachable(uri)
    run_id = tracking.create_container(uri, "e", "sweep-x", {"phase": record.STUDY, "study": "x"}, {})
    tracking.update_container(uri, run_id, {"trials_complete": 0}, "RUNNING")  # this process works for it
    return run_id


def test_a_container_closes_when_its_worker_stops(tmp_path):
    """Interrupted (SIGTERM arrives as KeyboardInterrupt) while this process was the last to work for the
    sweep: the sweep's run ends KILLED with the reason; if another worker stamped it since, it stays
    RUNNING."""
    from bench import tracking

    uri = seeded_store(tmp_path / "mlflow.db")
    c = MlflowClient(uri)
    first = container(uri)
    with pytest.raises(KeyboardInterrupt):
        with tracking.container_work(uri, first):
            raise KeyboardInterrupt("terminated (SIGTERM)")
    run = c.get_run(first)
    assert run.info.status == "KILLED" and "SIGTERM" in run.data.tags["error"]

    second = container(uri)
    c.set_tag(second, "pid", "1")  # another worker (pid 1 here) works for it now
    with pytest.raises(RuntimeError):
        with tracking.container_work(uri, second):
            raise RuntimeError("storage gone")
    assert c.get_run(second).info.status == "RUNNING"


def test_a_lost_container_is_closed_unless_a_worker_still_beats_it(tmp_path, monkeypatch):
    """Its process is gone: closed as lost by the next command, unless a child run (perhaps on another host)
    has beaten its heartbeat recently."""
    from bench import tracking

    uri = seeded_store(tmp_path / "mlflow.db")
    c = MlflowClient(uri)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale, fresh = container(uri), container(uri)
    for run_id, beat in ((stale, time.time() - 3600), (fresh, time.time())):
        c.set_tag(run_id, "pid", str(gone.pid))
        c.set_tag(run_id, "heartbeat", f"{beat:.0f}")
    tracking._REAPED.discard(uri)
    assert tracking.close_lost_runs(uri) == [stale]
    assert c.get_run(stale).info.status == "KILLED" and c.get_run(fresh).info.status == "RUNNING"


def test_a_child_run_beats_its_parent(tmp_path, monkeypatch):
    from bench import tracking

    monkeypatch.setenv("BENCH_HEARTBEAT_SECONDS", "0.2")
    uri = seeded_store(tmp_path / "mlflow.db")
    parent = container(uri)
    c = MlflowClient(uri)
    c.set_tag(parent, "heartbeat", "0")
    with tracking.tracked_run(uri, "e", "child", {}, parent_run_id=parent):
        time.sleep(1.0)
    assert time.time() - float(c.get_run(parent).data.tags["heartbeat"]) < 5


def sweep_in_a_trial(tiny_models, glue_dir, tmp_path, uri, *extra, stderr):
    """`bench sweep run` of long full-FT trials in a subprocess, returned once a trial has logged a loss."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "BENCH_HEARTBEAT_SECONDS": "0.5"}
    argv = ["sweep", "run", "--method", "full", "--model", tiny_models["bert"], "--task", "rte"]
    argv += [
        "--data-dir",
        str(glue_dir),
        "--trials",
        "2",
        "--set",
        "max_steps=100000",
        "--set",
        "log_every=1",
    ]
    argv += [*extra, "--tracking-uri", uri, "--output-dir", str(tmp_path / "out")]
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=stderr, text=True)  # fmt: skip
    c = MlflowClient(uri)
    deadline, trial = time.time() + 120, None
    while time.time() < deadline and trial is None:
        time.sleep(0.5)
        trial = next((r for r in all_runs(uri) if r.data.tags.get("phase") == "trial"
                      and c.get_metric_history(r.info.run_id, "train_loss")), None)  # fmt: skip
    assert trial is not None, "no trial started"
    return proc


@pytest.mark.slow
def test_sigterm_during_a_sweep_trial_closes_the_sweep(tiny_models, glue_dir, tmp_path):
    """The trial's run ends KILLED and so does the sweep's parent run: nothing is left RUNNING."""
    uri = seeded_store(tmp_path / "mlflow.db")
    proc = sweep_in_a_trial(tiny_models, glue_dir, tmp_path, uri, stderr=subprocess.DEVNULL)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    runs = {r.data.tags.get("phase"): r for r in all_runs(uri)}
    assert runs["trial"].info.status == "KILLED"
    assert runs["study"].info.status == "KILLED" and "SIGTERM" in runs["study"].data.tags["error"]


class Outage:
    """Stands in for MLflow's client while the store is away: log_batch fails until `up` (then records)."""

    def __init__(self, real):
        self.real, self.up, self.calls = real, False, 0

    def log_batch(self, run_id, metrics=(), **kw):
        self.calls += 1
        if not self.up:
            raise ConnectionError("tracking server unreachable")
        return self.real.log_batch(run_id, metrics=metrics, **kw)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_metrics_survive_an_outage_and_replay(tmp_path, monkeypatch, capsys):
    """While the store refuses batches nothing leaves the buffer; back up, every metric arrives exactly once.
    Still away at the end of the run: the rest goes to a spill file that `bench sync` replays."""
    from bench import tracking

    monkeypatch.setenv("BENCH_HEARTBEAT_SECONDS", "0.1")
    uri = seeded_store(tmp_path / "mlflow.db")
    c = MlflowClient(uri)
    with tracking.tracked_run(uri, "e", "r", {}, spill_dir=tmp_path / "unsent") as t:
        t.client = outage = Outage(t.client)
        for step in range(700):  # 500 wake the sender: it fails, the metrics stay
            t.log_metrics({"loss": step / 1000}, step)
        time.sleep(0.5)
        assert outage.calls > 0 and not t.flush(timeout=0.5)
        outage.up = True
        assert t.flush(timeout=10)
        for step in range(700, 900):
            t.log_metrics({"loss": step / 1000}, step)
        outage.up = False  # away again when the run ends
    assert len(c.get_metric_history(t.run_id, "loss")) == 700  # sent once, none twice
    err = capsys.readouterr().err
    spill = tmp_path / "unsent" / f"{t.run_id}.jsonl"
    assert (
        f"200 metrics of run {t.run_id} did not reach the tracking store" in err
        and f"bench sync {spill}" in err
    )
    assert c.get_run(t.run_id).info.status == "FINISHED"

    assert main(["sync", str(spill), "--tracking-uri", uri]) == 0
    assert not spill.exists()
    history = c.get_metric_history(t.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(900))


def test_sync_bad_input(tmp_path, capsys):
    uri = seeded_store(tmp_path / "mlflow.db")
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"run_id": "r"}\n')
    assert main(["sync", str(bad), "--tracking-uri", uri]) == 2
    assert "line 1 is not an unsent-metric record" in capsys.readouterr().err
    bad.write_text('{"run_id": "nope", "key": "k", "value": 1, "timestamp": 1, "step": 0}\n')
    assert main(["sync", str(bad), "--tracking-uri", uri]) == 2
    assert "run nope of" in capsys.readouterr().err and bad.exists()


@pytest.mark.slow
def test_a_study_whose_database_is_dropped_ends_in_one_line(tiny_models, glue_dir, tmp_path):
    """PostgreSQL study storage dropped mid-trial: the worker exits 2 with one line and no traceback, and the
    sweep's parent run is closed FAILED with that line."""
    import sqlalchemy

    from support import postgres_or_skip

    admin = postgres_or_skip()
    db = "bench_dropped_study_test"
    engine = sqlalchemy.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {db}"))
    storage = admin.rsplit("/", 1)[0] + f"/{db}"
    uri = seeded_store(tmp_path / "mlflow.db")
    proc = sweep_in_a_trial(
        tiny_models, glue_dir, tmp_path, uri, "--storage", storage, stderr=subprocess.PIPE
    )
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"DROP DATABASE {db} WITH (FORCE)"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.startswith("bench: error:")]
    assert len(lines) == 1 and "its storage stopped answering" in lines[0]
    parent = next(r for r in all_runs(uri) if r.data.tags.get("phase") == "study")
    assert parent.info.status == "FAILED" and "storage stopped answering" in parent.data.tags["error"]
