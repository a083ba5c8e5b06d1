"""The `bench` command: parse and delegate. Each command group lives in its own module here (run.py:
run/eval/tasks/methods/params/presets-free listings and ui; sweep.py: sweeps and intrinsic grids;
report.py: reports; perf.py: the speed benchmark); the work itself lives in bench/, sweeps/, reports/
and benchmarks/. Heavy imports (torch, transformers, mlflow) happen inside the handlers so that
`bench --help` and the listing commands answer at once."""

from __future__ import annotations

import argparse
import sys

from bench.errors import BenchError


def build_parser() -> argparse.ArgumentParser:
    from bench import __version__
    from bench.cli import perf, report, run, sweep

    parser = argparse.ArgumentParser(prog="bench", description="PEFT benchmark harness tracked in MLflow")
    parser.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run.add_parsers(sub)
    sweep.add_parsers(sub)
    report.add_parsers(sub)
    perf.add_parsers(sub)
    run.add_ui_parser(sub)
    return parser


def main(argv=None) -> int:
    from bench import signals

    args = build_parser().parse_args(argv)
    signals.install()  # a killed run still ends KILLED in MLflow, not RUNNING
    try:
        return args.func(args)
    except BenchError as e:
        from bench.redact import redact

        print(f"bench: error: {redact(e)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `bench ... | head`: the reader left; end quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at interpreter exit
        return 141
    except Exception as e:  # noqa: BLE001 - a training failure: the run is already marked FAILED
        from bench.train import NonFiniteLoss

        if not isinstance(e, NonFiniteLoss):
            raise
        from bench.redact import redact

        print(f"bench: run failed: {redact(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


def split_list(text):
    """'a, b,,c' -> ['a', 'b', 'c']; None/'' -> None."""
    return [x.strip() for x in text.split(",") if x.strip()] if text else None
