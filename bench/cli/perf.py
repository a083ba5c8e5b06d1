"""`bench perf`: the side-by-side speed benchmark (the work is in benchmarks/perf.py)."""

from __future__ import annotations

from bench.cli.run import add_run_options


def add_parsers(sub) -> None:
    p = sub.add_parser("perf", help="side-by-side speed benchmark: bench's loop vs the HF Trainer")
    add_run_options(p)
    p.add_argument("--steps", type=int, default=40, help="optimizer steps per variant (default: 40)")
    p.add_argument("--repeats", type=int, default=3, help="alternated repetitions (default: 3)")
    p.add_argument(
        "--methods",
        default=None,
        help="methods timed against full FT on the same batches ('none': skip that table; default: "
        "every method but full FT and head only)",
    )
    p.add_argument(
        "--random-init",
        action="store_true",
        help="the model's architecture with fresh weights (init=random): bert-large-cased, roberta-large "
        "and the other standard models measured offline, with MiniLM's tokenizer standing in; "
        "speed and memory only, no dev metric",
    )
    p.add_argument(
        "--eval-samples",
        type=int,
        default=None,
        help="evaluate on the first N dev examples only (default: all); throughput is per example",
    )
    p.add_argument(
        "--markdown",
        default=None,
        metavar="PAGE",
        help="write the tables as this configuration's section of a performance page (e.g. "
        "docs/performance.md; other configurations' sections are kept) and append the targets, dated, "
        "to PAGE's -history.csv",
    )
    p.set_defaults(func="perf:cmd_perf")
