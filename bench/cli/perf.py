"""`bench perf`: the side-by-side speed benchmark (the work is in benchmarks/perf.py)."""

from __future__ import annotations

import sys

from bench.cli import split_list
from bench.errors import BenchError


def cmd_perf(args) -> int:
    from pathlib import Path

    from bench.cli.run import config_from_args
    from benchmarks.perf import compare
    from methods.base import default_methods

    cfg = config_from_args(args)
    if args.random_init:
        cfg = cfg.replace(init="random")
    if args.steps < 2 or args.repeats < 1:
        raise BenchError(f"--steps {args.steps} must be at least 2 (the first step is timed apart as setup) and "
                         f"--repeats {args.repeats} at least 1")
    if args.eval_samples is not None and args.eval_samples < 1:
        raise BenchError(f"--eval-samples {args.eval_samples} must be at least 1")
    methods = [] if args.methods == "none" else split_list(args.methods) or default_methods("perf")
    text = compare(cfg, args.steps, args.repeats, methods, echo=lambda m: print(m, file=sys.stderr),
                   eval_samples=args.eval_samples)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as f:
            f.write(text + "\n\n")
    return 0


def add_parsers(sub) -> None:
    from bench.cli.run import add_run_options

    p = sub.add_parser("perf", help="side-by-side speed benchmark: bench's loop vs the HF Trainer")
    add_run_options(p)
    p.add_argument("--steps", type=int, default=40, help="optimizer steps per variant (default: 40)")
    p.add_argument("--repeats", type=int, default=3, help="alternated repetitions (default: 3)")
    p.add_argument("--methods", default=None,
                   help="methods timed against full FT on the same batches ('none': skip that table; default: "
                        "every method but full FT and head only)")
    p.add_argument("--random-init", action="store_true",
                   help="the model's architecture with fresh weights (init=random): bert-large-cased, roberta-large "
                        "and the other standard models measured offline, with MiniLM's tokenizer standing in; "
                        "speed and memory only, no dev metric")
    p.add_argument("--eval-samples", type=int, default=None,
                   help="evaluate on the first N dev examples only (default: all); throughput is per example")
    p.add_argument("--out", default=None, help="append the tables to this Markdown file")
    p.set_defaults(func=cmd_perf)
