"""What `bench report` and `bench heads` do once their command line is parsed (the parsers:
bench/cli/report.py)."""

from __future__ import annotations

import sys

from bench.cli.common import split_list
from bench.cli.handlers.params import cmd_params
from bench.errors import BenchError
from reports.heads import compare, run_analysis
from reports.intrinsic import across_models, write_report
from reports.pareto import pareto_report
from reports.tables import results_report


def cmd_report(args) -> int:
    if args.report_command == "params":
        return cmd_params(args)
    if args.report_command == "heads":
        print(compare(args.first, args.second), end="")
        return 0
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
                    echo=lambda m: print(m, file=sys.stderr),
                )
            )
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
                echo=lambda m: print(m, file=sys.stderr),
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
        ),
        end="",
    )
    return 0


def cmd_heads(args) -> int:
    run_analysis(
        args.model,
        args.task,
        args.data_dir,
        args.samples,
        args.threshold,
        args.count_special_queries,
        args.run,
        args.checkpoint,
        args.ablate,
        args.draws,
        args.out_dir,
        args.tracking_uri,
        definition=args.definition,
    )
    return 0
