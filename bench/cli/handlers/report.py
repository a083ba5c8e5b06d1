"""What `bench report table | budget | intrinsic | pareto` do once their command line is parsed (the parsers:
bench/cli/report.py)."""

from __future__ import annotations

import sys

from bench.cli.common import split_list
from bench.errors import BenchError
from reports.budget import budget_report
from reports.intrinsic import across_models, write_report
from reports.pareto import pareto_report
from reports.tables import results_report


def say(message: str) -> None:
    """Progress lines (files written) to stderr: stdout holds the report itself."""
    print(message, file=sys.stderr)


def cmd_report(args) -> int:
    if args.report_command == "intrinsic":
        if bool(args.model) == bool(args.models):
            raise BenchError(
                "bench report intrinsic needs --model M (one model's curves) or --models A,B,... "
                "(d90 across models)"
            )
        if args.models:
            print(
                across_models(
                    split_list(args.models),
                    args.task,
                    args.metric,
                    args.format,
                    args.out_dir,
                    args.tracking_uri,
                )
            )
        else:
            print(
                write_report(
                    args.model,
                    args.task,
                    args.metric,
                    args.format,
                    args.out_dir,
                    args.tracking_uri,
                    args.standalone,
                    echo=say,
                )
            )
        return 0
    if args.report_command == "budget":
        print(budget_report(args.tracking_uri, args.model, args.task, args.format, args.out_dir, say), end="")
        return 0
    if args.report_command == "pareto":
        print(
            pareto_report(
                args.tracking_uri,
                args.model,
                split_list(args.tasks),
                args.x,
                args.format,
                args.out_dir,
                args.all_runs,
                echo=say,
            ),
            end="",
        )
        return 0

    print(
        results_report(
            args.tracking_uri,
            args.model,
            split_list(args.tasks),
            split_list(args.methods),
            args.format,
            args.published,
            args.all_runs,
            args.standalone,
            args.layout,
            stats=args.stats,
            exclude_degenerate=args.exclude_degenerate,
        ),
        end="",
    )
    return 0
