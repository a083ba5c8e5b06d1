"""What `bench heads` and `bench report heads` do once their command line is parsed (the parsers:
bench/cli/report.py)."""

from __future__ import annotations

from reports.heads import compare, run_analysis


def cmd_compare(args) -> int:
    print(compare(args.first, args.second), end="")
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
