"""A lab's shared set-up, started here on 127.0.0.1 (docs/scaling.md): an MLflow tracking server on
PostgreSQL with artifact proxying, a 3-worker sweep on a PostgreSQL study logging to it over http, an
adapter fetched back through the server reproducing its metric, and the report table read from it."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from bench.checkpoint import download_run_checkpoint
from bench.cli import main
from bench.reload import evaluate_checkpoint
from sweeps import study as sweep_study

from support import POSTGRES, SPACE, make_study, postgres_or_skip, worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """`mlflow server` on a fresh PostgreSQL database with --artifacts-destination (artifact proxying):
    clients
    send artifacts to the server, which writes them to one place, whatever machine ran the trial."""
    import psycopg

    postgres_or_skip()
    db = f"bench_mlflow_{uuid.uuid4().hex[:8]}"
    admin = POSTGRES.replace("postgresql://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db}")
    backend = f"postgresql+psycopg://{POSTGRES.split('://', 1)[1].rsplit('/', 1)[0]}/{db}"
    port = free_port()
    artifacts = tmp_path / "server-artifacts"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend,
            "--artifacts-destination",
            artifacts.as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(180):
            try:
                urllib.request.urlopen(uri + "/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail("mlflow server exited at start")
                time.sleep(1)
        else:
            pytest.fail("mlflow server did not answer /health in 180 s")
        yield uri, artifacts
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


@pytest.mark.slow
def test_sweep_on_postgresql_logs_to_a_shared_server(tiny_models, glue_dir, tmp_path, mlflow_server, capsys):
    from mlflow.tracking import MlflowClient

    uri, artifacts = mlflow_server
    storage = postgres_or_skip()
    name = make_study(tiny_models, glue_dir, tmp_path, storage, 3, SPACE, pruner="none", tracking_uri=uri)
    procs = [worker(name, storage, tmp_path) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    study = sweep_study.load(name, sweep_study.open_storage(storage))
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 3
    c = MlflowClient(uri)
    runs = [c.get_run(t.user_attrs["mlflow_run_id"]) for t in complete if "mlflow_run_id" in t.user_attrs]
    assert len({r.info.run_id for r in runs}) == len(runs) > 0  # none duplicated
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags["mlflow.parentRunId"] == study.user_attrs["mlflow_parent_run_id"] for r in runs)
    # Proxied artifacts: stored by the server under its destination, not in a worker's ./mlruns.
    assert all(r.info.artifact_uri.startswith("mlflow-artifacts:") for r in runs)
    assert list(artifacts.rglob("adapter.safetensors"))
    assert not (tmp_path / "mlruns").exists() and not list(tmp_path.glob("mlflow-artifacts*"))
    assert not any(p.is_symlink() for p in (tmp_path / "runs").rglob("adapter"))  # nothing local to link to
    # The adapter comes back through the server and gives exactly the logged metric.
    run = runs[0]
    directory = download_run_checkpoint(run.info.run_id, uri, tmp_path / "fetched")
    result = evaluate_checkpoint(directory, echo=lambda *a: None)
    assert result["metrics"]["dev"]["accuracy"] == run.data.metrics["best_dev_accuracy"]
    capsys.readouterr()
    assert main(["report", "table", "--model", tiny_models["bert"], "--all-runs", "--tracking-uri", uri]) == 0
    table = capsys.readouterr().out
    # --all-runs: one row per trial configuration (labelled by what varies: lr, and epochs where drawn
    # differently), read from the server
    rows = [x for x in table.splitlines() if x.startswith("| Full FT ")]
    assert len(rows) == 3 and all("lr=" in x for x in rows)


def test_unreachable_server_is_one_line_and_leaves_nothing(tiny_models, glue_dir, tmp_path, capsys):
    port = free_port()  # nothing listens there
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
                "--tracking-uri",
                f"http://127.0.0.1:{port}",
                "--output-dir",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"tracking URI http://127.0.0.1:{port} is unreachable" in err
    assert not any((tmp_path / "o").glob("*"))  # no run directory was started


def test_sweep_with_an_unreachable_server_creates_no_study(tmp_path, capsys):
    port = free_port()
    assert (
        main(
            [
                "sweep",
                "create",
                "--method",
                "lora",
                "--task",
                "rte",
                "--tracking-uri",
                f"http://user:secret@127.0.0.1:{port}",
                "--output-dir",
                str(tmp_path / "runs"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is unreachable" in err and "secret" not in err
    assert main(["sweep", "ls", "--output-dir", str(tmp_path / "runs")]) == 0
    assert "no studies in" in capsys.readouterr().out


def test_shared_tag_survives_a_concurrent_insert(tracking_uri, monkeypatch):
    """Two processes setting one new tag at once: MLflow's SQL store inserts a tag it did not find, and the
    later insert fails (IntegrityError). Here the other process's insert happens between our lookup and our
    insert: the real store then holds the row, our first set_tag fails as it would, the retry updates it."""
    import mlflow
    from mlflow import MlflowClient

    from bench import tracking

    mlflow.set_tracking_uri(tracking_uri)
    run_id = MlflowClient(tracking_uri).create_run("0").info.run_id
    real = tracking.client(tracking_uri)
    calls = []

    class Racing:
        def set_tag(self, rid, key, value):
            calls.append(key)
            if len(calls) == 1:  # the other process wins the insert; ours collides
                real.set_tag(rid, key, "dev accuracy")
                raise RuntimeError("(sqlite3.IntegrityError) UNIQUE constraint failed: tags.key")
            real.set_tag(rid, key, value)

    monkeypatch.setattr(tracking, "client", lambda uri: Racing())
    tracking.set_shared_tag(tracking_uri, run_id, "final_metric", "dev accuracy")
    assert calls == ["final_metric", "final_metric"]
    assert MlflowClient(tracking_uri).get_run(run_id).data.tags["final_metric"] == "dev accuracy"
