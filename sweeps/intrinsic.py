"""`bench intrinsic`: each method's size knob over a log-spaced grid, plus full fine-tuning and head-only
anchors, on the same seeds and the same learning-rate selection rule, all under one MLflow parent run.
Resumable: a (configuration, seed) already FINISHED under the parent is skipped."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch

from bench import record, signals, tracking
from bench.errors import BenchError, NonFiniteLoss
from bench.logs import quiet_libraries
from bench.param_table import arch_config, meta_counts
from bench.resolve import build_config
from bench.runner import run
from bench.tasks import get_task
from methods import REGISTRY, get_method


def plan(
    model: str,
    task: str,
    methods: list[str],
    points: int,
    lr_grid: dict[str, list[float]],
    base: dict | None = None,
) -> list[tuple]:
    """[(method, method_options, lr)] for every curve point and anchor; a method without a grid runs at the
    lr its configuration resolves to (the base's, else the method's default)."""
    config = arch_config(model, get_task(task))
    out = []
    anchors = [m.name for m in REGISTRY.values() if m.anchor]
    for name in [*anchors, *[m for m in methods if m not in anchors]]:
        method = get_method(name)
        resolved = build_config(base or {}, {"method": name, "model": model, "task": task}).lr
        for opts in method.knob_points(config, points):
            for lr in lr_grid.get(name) or [resolved]:
                out.append((name, opts, lr))
    return out


def check_points(probe, steps: list[tuple]) -> None:
    """Every point's method attaches to the model (on the meta device, from the architecture alone) before
    the grid's parent run exists: a knob value the model cannot take (a block size that does not divide its
    width) is one line now, not a failure halfway through the grid."""
    task = get_task(probe.task)
    for method, opts in {(m, tuple(sorted(o.items()))) for m, o, _ in steps}:
        options = {**(probe.method_options if method == probe.method else {}), **dict(opts)}
        try:
            meta_counts(probe.model, task, method, options, probe.head)
        except BenchError as e:
            shown = ", ".join(f"{k}={v}" for k, v in opts) or "its defaults"
            raise BenchError(f"intrinsic grid point {method} at {shown}: {e}") from None


def parent_run(uri: str, experiment: str, name: str, budget: dict) -> str:
    """The grid's container run, found again when the grid is resumed."""
    tags = {"intrinsic": name, "phase": record.INTRINSIC_STUDY}
    found = tracking.find_runs(uri, experiment, tags)
    return found[0].info.run_id if found else tracking.create_container(uri, experiment, name, tags, budget)


def run_intrinsic(
    model: str,
    task: str,
    methods: list[str],
    seeds: int,
    points: int,
    base: dict,
    lr_grid: dict[str, list[float]] | None = None,
    workers: int = 1,
    echo=print,
) -> str:
    quiet_libraries()
    if seeds < 1 or points < 2 or workers < 1:
        raise BenchError(
            f"--seeds {seeds} and --workers {workers} must be at least 1 and --points {points} at least 2"
        )
    for m in methods:
        if not get_method(m).knob and not get_method(m).anchor:
            raise BenchError(f"method {m} has no size knob for a curve")
    probe = build_config(base, {"model": model, "task": task})
    name = record.intrinsic_name(probe.model, probe.task)
    uri = probe.tracking_uri
    tracking.check_reachable(uri)
    experiment = record.experiment_name(probe.task, probe.experiment)
    steps = plan(model, probe.task, methods, points, lr_grid or {}, base)
    check_points(probe, steps)
    budget = {
        "seeds": seeds,
        "points": points,
        "methods": ",".join(methods),
        "base": base,
        "lr_grid": {m: [lr for mm, _, lr in steps if mm == m] for m in {s[0] for s in steps}},
    }
    parent = parent_run(uri, experiment, name, budget)
    todo = []
    total = len(steps) * seeds
    for method, opts, lr in steps:
        m = get_method(method)
        for seed in range(1, seeds + 1):
            tags = {
                "phase": record.INTRINSIC,
                "intrinsic": name,
                "knob": m.knob or "-",
                "knob_value": m.knob_value_label(opts),
            }
            cfg = build_config(
                base,
                {
                    "method": method,
                    "model": model,
                    "task": task,
                    "method_options": opts,
                    "lr": lr,
                    "seed": seed,
                    "tracking_uri": uri,
                    "experiment": experiment,
                    "tags": tags,
                },
            )
            if tracking.finished_run(cfg, record.INTRINSIC, {"intrinsic": name}) is None:
                todo.append(cfg)
    echo(
        f"{name}: {total} point runs, {total - len(todo)} already finished, {len(todo)} to run"
        + (f" in {workers} worker processes" if workers > 1 and todo else "")
    )
    tracking.update_container(
        uri, parent, {"runs_total": total, "runs_finished": total - len(todo)}, "RUNNING"
    )
    with tracking.container_work(uri, parent):
        failed = _run_points(todo, parent, workers, echo)
    tracking.update_container(
        uri,
        parent,
        {"runs_total": total, "runs_finished": total - len(failed), "runs_failed": len(failed)},
        "FINISHED",
    )
    echo(
        f"{name}: {total - len(failed)} of {total} point runs finished under MLflow parent {parent}"
        + (f"; {len(failed)} failed (rerun the same command to retry them)" if failed else "")
        + f"; see `bench report intrinsic --model {model} --task {probe.task}`"
    )
    return name


def _run_point(cfg, parent: str) -> str | None:
    """One point; returns the failure message of a run whose loss diverged (it is tracked as FAILED,
    and the rest of the grid goes on), None when it finished."""
    try:
        run(cfg, progress=False, parent_run_id=parent, echo=lambda *a: None)
    except NonFiniteLoss as e:
        return str(e)
    return None


def _init_worker(threads: int) -> None:
    """A worker shares the cores with its siblings, and a SIGTERM (timeout, scheduler) ends its run
    KILLED in MLflow rather than leaving it RUNNING, as in `bench run`."""
    torch.set_num_threads(threads)
    signals.install()


def _run_points(todo: list, parent: str, workers: int, echo) -> list[str]:
    """Runs the points one by one, or `workers` at a time in spawned processes (CUDA cannot fork):
    small models leave a GPU mostly idle, so several runs share it; on a CPU the cores are split."""

    def label(i, cfg):
        return f"[{i}/{len(todo)}] {cfg.method} {cfg.method_options} lr {cfg.lr:g} seed {cfg.seed}"

    failed = []
    if workers == 1:
        for i, cfg in enumerate(todo, 1):
            echo(label(i, cfg))
            if (err := _run_point(cfg, parent)) is not None:
                echo(f"  failed: {err}")
                failed.append(err)
        return failed

    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads,),
    ) as pool:
        futures = {pool.submit(_run_point, cfg, parent): (i, cfg) for i, cfg in enumerate(todo, 1)}
        for future in as_completed(futures):
            err = future.result()
            echo(label(*futures[future]) + (f": failed: {err}" if err else ": finished"))
            if err is not None:
                failed.append(err)
    return failed
