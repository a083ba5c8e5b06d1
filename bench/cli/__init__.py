"""The `bench` command: parse and delegate. Each command group's parsers live in a module here (run.py:
run/eval/predict/presets/tasks/methods/params and ui; sweep.py: sweeps and intrinsic grids; report.py:
reports and heads; perf.py: the speed benchmark), its handlers in handlers/<group>.py, and the work itself
in bench/, sweeps/, reports/ and benchmarks/. Parsers import nothing heavy, so that `bench --help`
answers at once; a handler module is imported when its command runs."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from bench import __version__, signals
from bench.cli import perf, report, run, sweep
from bench.errors import BenchError, NonFiniteLoss, first_line
from bench.redact import redact


class Parser(argparse.ArgumentParser):
    """argparse echoes a bad value in its error line ("unrecognized arguments: --tracking-uri
    postgresql://u:pw@h/db"): redact that line like every other bench prints."""

    def error(self, message):
        super().error(redact(message))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bench", description="PEFT benchmark harness tracked in MLflow")
    parser.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run.add_parsers(sub)
    sweep.add_parsers(sub)
    report.add_parsers(sub)
    perf.add_parsers(sub)
    run.add_ui_parser(sub)
    document(parser, [])
    return parser


# Help for options that several commands share (each command may give its own instead).
COMMON_HELP = {
    "--tracking-uri": "MLflow store: sqlite:///path.db, postgresql://..., http://server (default: "
    "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    "--data-dir": "local task files: a directory holding glue/<TASK>/ or <TASK>/ (e.g. ../shared/data); "
    "default: "
    "the Hugging Face hub",
    "--model": "minilm, a hub id (bert-large-cased, roberta-large, ...) or a local model directory",
    "--task": "a task name (see `bench tasks`)",
    "--method": "a method name (see `bench methods`)",
    "--experiment": "MLflow experiment (default: bench-<task>)",
    "--output-dir": "where run directories and local stores go (default: runs)",
    "--format": "output format",
    "--heartbeat": "seconds between a worker's heartbeats; a trial silent for 3 is failed and retried",
    "--port": "port of the UI on 127.0.0.1 (default: 5000)",
    "study": "the study's name (see `bench sweep ls`)",
}

# One or two examples per command, shown under its --help.
EXAMPLES = {
    "run": "bench run --method lora --model minilm --task rte --data-dir ../shared/data --set method.r=16\n"
    "bench run --method pasta --model roberta-large --task rte --preset paper --dry-run",
    "presets": "bench presets   # every paper preset: method, model x tasks, values and their sources",
    "eval": "bench eval --run <mlflow run id>\nbench eval --checkpoint runs/<run dir>/adapter",
    "predict": "bench predict --run <mlflow run id> --out-dir predictions/",
    "tasks": "bench tasks",
    "methods": "bench methods\nbench methods --matrix --write docs/capabilities.md",
    "sync": "bench sync runs/unsent-metrics/<run id>.jsonl --tracking-uri http://mlflow.example:5000",
    "params": "bench params --model bert-large-cased,roberta-large --task rte\nbench params --published",
    "sweep": "bench sweep run --method lora --model minilm --task mrpc --data-dir ../shared/data --trials 20",
    "sweep create": "bench sweep create --method lora --model minilm --task mrpc --data-dir ../shared/data "
    "--trials 20 --seeds-final 3",
    "sweep run": "bench sweep run --method lora --model minilm --task mrpc --data-dir ../shared/data "
    "--trials 20",
    "sweep work": "bench sweep work lora-minilm-mrpc-0e8f9440   # start as many as you like, on any machine\n"
    "bench sweep work lora-minilm-mrpc-0e8f9440 --workers 4   # four on this machine (one GPU)",
    "sweep launch": "bench sweep launch lora-minilm-mrpc-0e8f9440 --workers 8 --executor slurm "
    "--gpus-per-worker 1 "
    "--storage postgresql://user@db/optuna\n"
    "bench sweep launch lora-minilm-mrpc-0e8f9440 --workers 2 --executor local",
    "sweep status": "bench sweep status lora-minilm-mrpc-0e8f9440",
    "sweep finalize": "bench sweep finalize lora-minilm-mrpc-0e8f9440 --seeds 3",
    "sweep ls": "bench sweep ls --storage postgresql://user@host/db",
    "intrinsic": "bench intrinsic --model minilm --task mrpc --methods pasta,lora --seeds 3 --points 5 "
    "--data-dir ../shared/data --set epochs=1",
    "report": "bench report table --model minilm --format latex --standalone > table.tex",
    "report table": "bench report table --model minilm --stats\nbench report table --model roberta-large "
    "--published --format latex --standalone",
    "report intrinsic": "bench report intrinsic --model minilm --task mrpc\n"
    "bench report intrinsic --models minilm,bert-base-cased --task mrpc",
    "report budget": "bench report budget --model minilm --task mrpc   # after sweeps of the methods to "
    "compare",
    "report pareto": "bench report pareto --model minilm --x params --tasks rte,mrpc",
    "report params": "bench report params --model bert-large-cased --format latex --standalone",
    "report heads": "bench report heads docs/heads/heads-minilm-rte.json "
    "docs/heads/heads-minilm-rte-pasta.json",
    "heads": "bench heads --model minilm --task rte --data-dir ../shared/data\n"
    "bench heads --run <mlflow run id> --ablate vertical",
    "perf": "bench perf --method full --model minilm --task mrpc --data-dir ../shared/data --methods "
    "lora,pasta\n"
    "bench perf --model bert-large-cased --random-init --task sst2 --data-dir ../shared/data --batch-size 8 "
    "--steps 6 --eval-samples 64",
    "ui": "bench ui --tracking-uri sqlite:///mlflow.db --port 5000\n"
    "bench ui --sweeps   # + optuna-dashboard on runs/sweeps.db, port 8080",
}


def document(parser: argparse.ArgumentParser, path: list[str]) -> None:
    """Every option gets help text (the shared ones from COMMON_HELP) and every command its examples."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                key = " ".join([*path, name])
                if key in EXAMPLES and not child.epilog:
                    child.epilog = "examples:\n" + "\n".join(
                        "  " + line for line in EXAMPLES[key].splitlines()
                    )
                    child.formatter_class = argparse.RawDescriptionHelpFormatter
                document(child, [*path, name])
        elif action.help is None:
            name = action.option_strings[0] if action.option_strings else action.dest
            action.help = COMMON_HELP.get(name)


DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def disk_problem(error: BaseException) -> str | None:
    """'<path>: No space left on device (a run in progress is closed FAILED)' when `error`, or an error it was
    raised from, is a full, read-only or forbidden disk; None otherwise."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DISK_ERRNOS:
            where = f"{seen.filename}: " if seen.filename else ""
            return (
                f"{where}{seen.strerror or seen} (a run in progress is closed FAILED; nothing else changed)"
            )
        text = str(seen).lower()
        if "database or disk is full" in text or "readonly database" in text:
            return f"the tracking store's disk: {first_line(seen)}"
        seen = seen.__cause__ or seen.__context__
    return None


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    signals.install()  # a killed run still ends KILLED in MLflow, not RUNNING
    # A command's handler is imported only when it runs: handlers load torch, transformers and MLflow,
    # which `bench --help` and a mistyped option must not wait for.
    module, name = args.func.split(":")
    try:
        return getattr(importlib.import_module(f"bench.cli.handlers.{module}"), name)(args)
    except BenchError as e:
        print(f"bench: error: {redact(e)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `bench ... | head`: the reader left; end quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at interpreter exit
        return 141
    except Exception as e:  # noqa: BLE001 - a training failure: the run is already marked FAILED
        disk = disk_problem(e)
        if disk:  # a full, read-only or forbidden disk: one line naming the path, whatever layer hit it
            print(f"bench: error: {redact(disk)}", file=sys.stderr)
            return 2
        if not isinstance(e, NonFiniteLoss):
            raise

        print(f"bench: run failed: {redact(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
