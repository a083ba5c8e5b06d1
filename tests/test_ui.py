"""`bench ui` stopped with SIGTERM stops the whole MLflow server (its workers too) and optuna-dashboard and
frees their ports; the stores' URIs (which may hold a password) are on no command line."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc, what: str) -> bytes:
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            return urllib.request.urlopen(url, timeout=2).read()
        except OSError:
            time.sleep(0.5)
    proc.kill()
    pytest.fail(f"{what} did not come up")


@pytest.mark.slow
def test_sigterm_stops_the_servers_and_frees_the_ports(tmp_path):
    """`bench ui --sweeps`: the MLflow UI and optuna-dashboard on a study storage, the study's objective
    named; SIGTERM stops both process groups."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'sweeps.db'}"
    study = optuna.create_study(study_name="ui-study", storage=storage, direction="maximize")
    study.set_metric_names(["dev accuracy"])
    study.optimize(lambda t: t.suggest_float("lr", 1e-5, 1e-3, log=True), n_trials=2)
    port, sweeps_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.cli",
            "ui",
            "--port",
            str(port),
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--sweeps",
            "--storage",
            storage,
            "--sweeps-port",
            str(sweeps_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/health", proc, "the MLflow UI")
        api = f"http://127.0.0.1:{sweeps_port}/api/studies"
        studies = json.loads(wait_for(api, proc, "optuna-dashboard"))["study_summaries"]
        detail = json.loads(urllib.request.urlopen(f"{api}/{studies[0]['study_id']}").read())
    except BaseException:
        proc.send_signal(signal.SIGTERM)
        raise
    assert [s["study_name"] for s in studies] == ["ui-study"]
    assert detail["objective_names"] == ["dev accuracy"] and len(detail["trials"]) == 2
    family = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    assert len(family) >= 2  # both servers (and the MLflow server's workers)
    # the stores reach the servers through their environment: no command line (visible in `ps`) holds them
    # (checked after the servers are stopped, so that a failure leaves no server behind)
    on_command_line = [p for p in family if ".db" in " ".join(psutil.Process(p).cmdline())]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)  # bench waits for the server's group to stop (SIGKILL after 10 s)

    def alive():
        out = []
        for p in family:
            try:
                if psutil.Process(p).status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.NoSuchProcess:
                pass
        return out

    assert not alive()
    assert not on_command_line
    for freed in (port, sweeps_port):  # the ports are free again (as a new server binds one: SO_REUSEADDR)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", freed))
            s.listen()
