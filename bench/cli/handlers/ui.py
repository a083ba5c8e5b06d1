"""What `bench ui` does once its command line is parsed (the parser: bench/cli/run.py): the MLflow UI on
the tracking store and, with --sweeps, optuna-dashboard on the sweep storage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from bench.errors import BenchError
from bench.redact import redact
from bench.tracking import check_reachable, resolve_uri
from sweeps.study import open_storage, storage_url

# optuna-dashboard started from Python so that the storage URL (it may hold a password) travels in the
# environment, not on a command line that `ps` shows.
DASHBOARD = (
    "import os, optuna_dashboard; "
    "optuna_dashboard.run_server(os.environ['BENCH_SWEEP_STORAGE'], host='127.0.0.1', "
    "port=int(os.environ['BENCH_SWEEP_PORT']))"
)


def cmd_ui(args) -> int:
    """The MLflow server (and optuna-dashboard with --sweeps), each in its own process group, so that
    stopping bench (Ctrl-C, SIGTERM) stops all of it: the servers and the workers they fork, and the ports
    are free again."""
    ports = [args.port] + ([args.sweeps_port] if args.sweeps else [])
    for flag, port in zip(("--port", "--sweeps-port"), ports, strict=False):
        if not 1 <= port <= 65535:
            raise BenchError(f"{flag} {port} must be between 1 and 65535")
    if args.sweeps and args.port == args.sweeps_port:
        raise BenchError(f"--port and --sweeps-port are both {args.port}: give them different ports")
    uri = resolve_uri(args.tracking_uri)
    check_reachable(uri)
    commands = [
        (
            [sys.executable, "-P", "-m", "mlflow", "ui", "--host", "127.0.0.1", "--port", str(args.port)],
            {"MLFLOW_BACKEND_STORE_URI": uri},
        )
    ]
    print(f"MLflow UI on http://127.0.0.1:{args.port} for {redact(uri)}", flush=True)
    if args.sweeps:
        storage = storage_url(args.storage, args.output_dir)
        open_storage(storage)  # an unusable storage is refused here, in one line
        env = {"BENCH_SWEEP_STORAGE": storage, "BENCH_SWEEP_PORT": str(args.sweeps_port)}
        commands.append(([sys.executable, "-P", "-c", DASHBOARD], env))
        print(f"optuna-dashboard on http://127.0.0.1:{args.sweeps_port} for {redact(storage)}", flush=True)
    procs = []
    try:
        for argv, env in commands:
            # the store through the environment, not argv: a password on a command line is visible in `ps`
            procs.append(subprocess.Popen(argv, start_new_session=True, env={**os.environ, **env}))
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        return next(p.returncode for p in procs if p.returncode is not None)
    finally:
        for p in procs:
            stop_group(p)


def stop_group(proc) -> None:
    """SIGTERM the whole process group (the server and the workers it forked), wait up to 10 s for every
    member to go, then SIGKILL what is left: the port is free when bench returns."""

    def group_alive() -> bool:
        try:
            os.killpg(proc.pid, 0)
            return True
        except ProcessLookupError:
            return False

    if group_alive():
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while group_alive() and time.monotonic() < deadline:
        proc.poll()  # reap our direct child so it does not linger as a zombie
        time.sleep(0.1)
    if group_alive():
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
