"""`bench ui` stopped with SIGTERM stops the whole MLflow server (its workers too) and frees the port; the
store's URI (which may hold a password) is on no command line."""

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


@pytest.mark.slow
def test_sigterm_stops_the_server_and_frees_the_port(tmp_path):
    port = free_port()
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
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the MLflow UI did not come up")
    family = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    assert family  # the server and its workers
    # the store reaches the server through its environment: no command line (visible in `ps`) holds it
    # (checked after the server is stopped, so that a failure leaves no server behind)
    on_command_line = [p for p in family if "mlflow.db" in " ".join(psutil.Process(p).cmdline())]
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
    with socket.socket() as s:  # the port is free again (as a new server binds it: SO_REUSEADDR)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
