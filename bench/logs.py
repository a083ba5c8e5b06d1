"""Library log lines (MLflow's store migrations, Alembic, Optuna's study notices, transformers) go to a
log file at INFO, and only their warnings and errors to the terminal, which stays for bench's own lines.
The file: $BENCH_LOG, else ~/.cache/bench/bench.log."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

LIBRARIES = (
    "mlflow",
    "alembic",
    "optuna",
    "accelerate",
    "datasets",
)  # transformers: errors only (its load reports)
_DONE: list[str] = []


def log_file() -> Path:
    return Path(os.environ.get("BENCH_LOG") or Path.home() / ".cache" / "bench" / "bench.log")


def route_library_logs() -> None:
    """Idempotent: the first call installs the handlers; Optuna's own terminal handler is removed whenever
    Optuna is loaded (call again after importing it)."""
    if "optuna" in sys.modules:
        sys.modules["optuna"].logging.disable_default_handler()
    if _DONE:
        return
    _DONE.append("yes")
    import mlflow  # lazy: MLflow installs its terminal handler on import, to be turned down here  # noqa: F401

    try:
        path = log_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        to_file: logging.Handler | None = logging.FileHandler(path, encoding="utf-8")
        to_file.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
        to_file.setLevel(logging.INFO)
    except OSError:  # an unwritable home: the terminal still gets the warnings
        to_file = None
    for name in LIBRARIES:
        logger = logging.getLogger(name)
        for handler in logger.handlers:  # the library's own terminal handler: warnings and errors only
            handler.setLevel(logging.WARNING)
        if not logger.handlers:
            terminal = logging.StreamHandler()
            terminal.setLevel(logging.WARNING)
            logger.addHandler(terminal)
        if to_file is not None:
            logger.addHandler(to_file)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def quiet_libraries() -> None:
    """Keep the terminal for bench's own lines: no load reports, weight bars or MLflow schema notices."""
    from transformers.utils import logging as hf_logging  # lazy: transformers takes seconds to import

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    route_library_logs()  # library INFO lines to the log file, not the terminal
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
