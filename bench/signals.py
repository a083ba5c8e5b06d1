"""SIGTERM (a scheduler's timeout, `kill`) handled like Ctrl-C, so a terminated run ends KILLED in
MLflow rather than RUNNING; used by the CLI and by worker processes."""

from __future__ import annotations

import signal

MESSAGE = "terminated (SIGTERM)"
_terminated = False


def sigterm_as_interrupt(signum, frame):
    global _terminated
    _terminated = True
    raise KeyboardInterrupt(MESSAGE)


def raise_if_terminated() -> None:
    """The training loop's second chance, between steps: an exception raised while Python runs a finalizer
    or a weakref callback is printed and dropped ("Exception ignored in ..."), so a SIGTERM landing there
    would otherwise be lost and the run go on (seen once in the test suite)."""
    if _terminated:
        raise KeyboardInterrupt(MESSAGE)


def install() -> None:
    signal.signal(signal.SIGTERM, sigterm_as_interrupt)
