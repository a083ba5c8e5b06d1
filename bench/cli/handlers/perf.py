"""What `bench perf` does once its command line is parsed (the parsers: bench/cli/perf.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bench.cli.common import split_list
from bench.cli.handlers.run import config_from_args
from bench.errors import BenchError
from bench.tasks import get_task
from benchmarks.page import append_history, history_path, upsert
from benchmarks.perf import compare, refusals
from methods import default_methods


def shown_arg(arg: str) -> str:
    """A command-line argument as the page shows it: an absolute path inside the working directory's parent
    relative to the working directory (../shared/data, docs/performance.md), not this machine's layout."""
    if os.path.isabs(arg) and os.path.exists(arg):
        rel = os.path.relpath(arg)
        if not rel.startswith(os.path.join("..", "..")):
            return rel
    return arg


def cmd_perf(args) -> int:
    cfg = config_from_args(args)
    if args.random_init:
        cfg = cfg.replace(init="random")
    if args.steps < 2 or args.repeats < 1:
        raise BenchError(
            f"--steps {args.steps} must be at least 2 (the first step is timed apart as setup) and "
            f"--repeats {args.repeats} at least 1"
        )
    if args.eval_samples is not None and args.eval_samples < 1:
        raise BenchError(f"--eval-samples {args.eval_samples} must be at least 1")
    methods = [] if args.methods == "none" else split_list(args.methods) or default_methods("perf")
    refused = refusals(cfg, get_task(cfg.task), methods)
    if refused and args.methods not in (None, "none"):  # asked for by name: bad input
        raise BenchError(f"--methods: {next(iter(refused.values()))}")
    result = compare(
        cfg,
        args.steps,
        args.repeats,
        methods,
        echo=lambda m: print(m, file=sys.stderr),
        eval_samples=args.eval_samples,
        refused=refused,
    )
    text, stamp = result["text"], result["stamp"]
    print(text)
    if args.markdown:
        page = Path(args.markdown)
        measured = (
            f"Measured {stamp['date']} on {stamp['machine']}, load average {stamp['load']} when it started, "
            f"matmul peak {stamp['matmul_peak']}; `bench perf {' '.join(map(shown_arg, sys.argv[2:]))}`."
        )
        body = text.replace("\n", f"\n{measured}\n", 1)  # under the section's heading
        upsert(page, result["key"], body)
        append_history(page, stamp, result["key"], result["targets"])
        print(f"wrote the section {result['key']!r} of {page} and its targets to {history_path(page)}")
    return 0
