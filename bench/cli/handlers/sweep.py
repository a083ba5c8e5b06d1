"""What `bench sweep` and `bench intrinsic` do once their command line is parsed (the parsers:
bench/cli/sweep.py)."""

from __future__ import annotations

from bench.cli.common import split_list
from bench.config import parse_set
from bench.errors import BenchError
from methods import default_methods
from sweeps import driver
from sweeps.intrinsic import run_intrinsic
from sweeps.launch import launch, work_in_processes
from sweeps.study import status


def _sweep_base(args) -> dict:
    """Options fixed for every trial (--set, --data-dir, ...); they leave the search space."""
    base = parse_set(args.overrides)
    for name in ("data_dir", "output_dir", "tracking_uri", "experiment"):
        if getattr(args, name, None) is not None:
            base[name] = getattr(args, name)
    return base


def cmd_sweep(args) -> int:
    out = getattr(args, "output_dir", None) or "runs"
    uri = getattr(args, "tracking_uri", None)  # a study stores no credential: its workers are given it
    if args.sweep_command in ("create", "run"):
        name = driver.create(
            args.method,
            args.model,
            args.task,
            _sweep_base(args),
            args.space,
            args.storage,
            args.trials,
            args.seeds_final,
            args.search_seed,
            args.pruner,
            args.name,
            preset=args.preset,
            resume_anyway=args.resume_anyway,
            budget_seconds=args.budget_seconds,
        )
        if args.sweep_command == "run":
            driver.work(name, args.storage, None, args.heartbeat, out, args.force, tracking_uri=uri)
            print(status(name, args.storage, out))
            driver.finalize(name, args.storage, args.seeds_final, out, args.force, tracking_uri=uri)
        else:
            print(
                f"start workers with: bench sweep work {name}"
                + (" --storage <URL>" if args.storage else f" --output-dir {out}")
            )
    elif args.sweep_command == "work":
        if args.workers != 1:
            if args.n_trials is not None or args.force:
                raise BenchError("--workers N runs whole workers: --n-trials and --force apply to one worker")
            work_in_processes(args.study, args.storage, out, args.workers, args.heartbeat, tracking_uri=uri)
        else:
            ran = driver.work(
                args.study, args.storage, args.n_trials, args.heartbeat, out, args.force, tracking_uri=uri
            )
            print(f"this worker ran {ran} trials")
        print(status(args.study, args.storage, out))
    elif args.sweep_command == "launch":
        launch(
            args.study,
            args.storage,
            out,
            args.workers,
            args.executor,
            args.gpus_per_worker,
            args.mem_gb,
            args.timeout_min,
            args.partition,
            args.heartbeat,
            wait=not args.no_wait,
            tracking_uri=uri,
        )
        if not args.no_wait:
            print(status(args.study, args.storage, out))
    elif args.sweep_command == "finalize":
        driver.finalize(args.study, args.storage, args.seeds, out, args.force, tracking_uri=uri)
    return 0


def parse_lr_grid(text: str | None) -> dict[str, list[float]]:
    """'pasta=1e-3,3e-3;full=2e-5' -> {'pasta': [0.001, 0.003], 'full': [2e-05]}."""
    grid: dict[str, list[float]] = {}
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        method, sep, values = part.partition("=")
        try:
            grid[method.strip()] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            sep = ""
        if not sep or not grid.get(method.strip()):
            raise BenchError(
                f"malformed --lr-grid part {part!r}: expected method=lr1,lr2 (e.g. pasta=1e-3,3e-3)"
            )
    return grid


def cmd_intrinsic(args) -> int:
    run_intrinsic(
        args.model,
        args.task,
        split_list(args.methods) or default_curve_methods(),
        args.seeds,
        args.points,
        _sweep_base(args),
        parse_lr_grid(args.lr_grid),
        args.workers,
    )
    return 0


def default_curve_methods() -> list[str]:
    return default_methods("curve")
