"""SIGTERM (a scheduler's timeout, `kill`) handled like Ctrl-C, so a terminated run ends KILLED in
MLflow rather than RUNNING; used by the CLI and by worker processes."""

from __future__ import annotations

import signal


def sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt("terminated (SIGTERM)")


def install() -> None:
    signal.signal(signal.SIGTERM, sigterm_as_interrupt)
