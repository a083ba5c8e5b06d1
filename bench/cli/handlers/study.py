"""What `bench sweep status` and `bench sweep ls` do once their command line is parsed (the parsers:
bench/cli/sweep.py): they read the study's storage alone."""

from __future__ import annotations

from sweeps.study import list_studies, status


def cmd_study(args) -> int:
    out = getattr(args, "output_dir", None) or "runs"
    if args.sweep_command == "status":
        print(status(args.study, args.storage, out))
    else:
        print(list_studies(args.storage, out))
    return 0
