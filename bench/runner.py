"""`bench run`: from a RunConfig to a tracked, evaluated, saved model."""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from pathlib import Path

import yaml
from accelerate.utils import set_seed  # = transformers' set_seed, whose Trainer module imports peft (seconds)

from bench import checkpoint, degenerate, record, tracking
from bench.build import Built, build_model, prepare_data
from bench.config import RunConfig
from bench.device import flush_denormals, make_accelerator, peak_memory, processes, reset_peak_memory
from bench.environment import environment
from bench.errors import BenchError
from bench.logs import quiet_libraries
from bench.metrics import trivial_baseline
from bench.params import count_parameters, describe, flops_per_token
from bench.resolve import validate
from bench.tasks import get_task
from bench.train import evaluate, train


def check_output_dir(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out):
            pass
    except OSError as e:
        raise BenchError(f"output directory {path} is not writable ({e.strerror or e})") from None
    return out


def run(
    cfg: RunConfig,
    progress: bool = True,
    parent_run_id: str | None = None,
    on_eval=None,
    on_start=None,
    echo=print,
) -> dict:
    """Train and evaluate one configuration, tracked in MLflow. Everything that bad input can break
    is checked before the MLflow run is created, so bad input leaves nothing behind."""
    quiet_libraries()
    cfg = validate(cfg)  # a RunConfig built by hand is resolved as build_config resolves one
    task = get_task(cfg.task)
    world = processes()
    if cfg.batch_size % world:
        raise BenchError(
            f"--batch-size {cfg.batch_size} (the global batch) must divide evenly over the {world} "
            f"processes (e.g. {cfg.batch_size - cfg.batch_size % world or world})"
        )
    out_root = check_output_dir(cfg.output_dir)
    uri = cfg.tracking_uri
    tracking.check_reachable(uri)
    set_seed(cfg.seed)
    flush_denormals(cfg.flush_denormal)  # before anything starts torch's CPU threads
    built = build_model(cfg, task)
    prep = prepare_data(cfg, task, built)
    accelerator, precision = make_accelerator(cfg.precision)
    if (
        not accelerator.is_main_process
    ):  # data-parallel: rank 0 alone logs, stores and prints; the others train
        result = train(
            built.model,
            prep,
            cfg,
            accelerator,
            built.stored_names,
            lambda *a: None,
            progress=False,
            method=built.method,
            method_cfg=built.method_config,
        )
        return {"run_id": None, "run_name": cfg.run_name(), "task": task, "cfg": cfg, "result": result}
    counts = count_parameters(built.model, built.backbone_numel, built.stored_names)
    main_split = task.dev_splits[0]  # the trivial baseline is reported on the first dev split
    baseline = trivial_baseline(task, prep.train["labels"], task.task_kind.gold(prep.dev[main_split]))
    echo(
        f"{cfg.run_name()}: {len(prep.train['labels'])} train examples, "
        + ", ".join(f"{len(d['labels'])} {s}" for s, d in prep.dev.items())
        + f"; lr {cfg.lr:.3g}; {precision}"
    )
    echo(describe(counts))

    tags = record.run_tags(cfg, built.method, built.method_config) | built.init_tags
    experiment = record.experiment_name(task.name, cfg.experiment)
    with tracking.tracked_run(
        uri, experiment, cfg.run_name(), tags, parent_run_id, out_root / tracking.UNSENT_DIR
    ) as tracker:
        if on_start is not None:  # sweeps record the run id at once: a killed worker's run can be closed
            on_start(tracker.run_id)
        run_dir = out_root / f"{cfg.run_name()}-{tracker.run_id[:8]}"
        config_dict = {**cfg.to_dict(), "tracking_uri": tracking.redact(uri)}
        tracker.log_params(
            logged_params(config_dict, built.method_config, precision, len(prep.train["labels"]))
        )
        tracker.log_text(yaml.safe_dump(config_dict, sort_keys=False), "config.yaml")
        tracker.set_tags(
            {
                **environment(),
                "run_dir": str(run_dir.resolve()),
                "processes": world,
                record.DATA_DIGEST: record.data_digest(prep.sources),
            }
        )
        tracking.log_datasets(uri, tracker.run_id, task.name, prep.sources)
        tracker.log_metrics(
            {record.count_metric(k): v for k, v in counts.items()}
            | {record.baseline_metric(main_split, k): v for k, v in baseline.items()}
        )
        reset_peak_memory()
        t0 = time.perf_counter()
        result = train(
            built.model,
            prep,
            cfg,
            accelerator,
            built.stored_names,
            tracker.log_metrics,
            on_eval=on_eval,
            progress=progress,
            method=built.method,
            method_cfg=built.method_config,
        )
        wall = time.perf_counter() - t0
        # Labelled test splits (CoNLL-2003): scored once, with the weights of the best dev evaluation.
        tested = (
            evaluate(built.model, prep, cfg.eval_batch_size, accelerator.autocast, prep.test)
            if prep.test
            else {}
        )
        # Learned nothing? Judged on the first dev split's predictions at the best evaluation.
        predictions = result.best_predictions.get(main_split)
        flagged = (
            degenerate.flags(task, predictions, result.best_metrics.get(main_split, {}), baseline)
            if predictions is not None
            else {}
        )
        after = built.method.counts_after_training(built.model, built.method_config)
        if after:  # e.g. Diff pruning's nonzero diff: logged at the last step, so it is the value runs report
            counts = {**counts, **after}
            tracker.log_metrics({record.count_metric(k): v for k, v in after.items()}, result.steps)
            echo(describe(counts) + " (after training)")
        meta = {
            "format": 1,
            "method": cfg.method,
            "method_options": cfg.method_options,
            "model": cfg.model,
            "task": task.name,
            "config": config_dict,
            "counts": counts,
            "init_chain": built.init_tags.get("init_chain", ""),
            "best_epoch": result.best_epoch,
            "best_metrics": {**result.best_metrics, **tested},
        }
        size, where = store_checkpoint(tracker, run_dir, built, meta)
        final = {record.best_metric(s, k): v for s, m in result.best_metrics.items() for k, v in m.items()}
        final |= {record.test_metric(s, k): v for s, m in tested.items() for k, v in m.items()}
        final |= {
            "best_epoch": result.best_epoch,
            "wall_seconds": wall,
            "train_seconds": result.train_seconds,
            "train_samples_per_s": result.train_samples / max(result.train_seconds, 1e-9),
            "eval_seconds": result.eval_seconds,
            "eval_samples_per_s": result.eval_samples / max(result.eval_seconds, 1e-9),
            "steps": result.steps,
            "epochs_run": result.epochs_run,
            # the compute a run cost, comparable across methods and machines (docs/tracking.md)
            "train_tokens": result.train_tokens,
            "train_flops": flops_per_token(built.model, not built.method.frozen_backbone)
            * result.train_tokens,
            "adapter_file_bytes": size,
            **peak_memory(),
            **{f"time_{k}_seconds": v for k, v in result.timings.items()},
        }
        tracker.log_metrics(final, result.steps)
        tracker.set_tags(
            {"stopped": result.stopped, "state": "finished"}
            | ({degenerate.TAG: degenerate.tag_value(flagged)} if flagged else {})
        )
        tracker.flush(timeout=15)  # the store away: the metrics stay buffered (spilled at the end)
        final["tracking_seconds"] = tracker.seconds
        tracker.log_metrics({"tracking_seconds": tracker.seconds}, result.steps)
        run_id = tracker.run_id
    exp_id = tracking.client(uri).get_run(run_id).info.experiment_id
    summary = {
        "run_id": run_id,
        "run_name": cfg.run_name(),
        "task": task,
        "cfg": cfg,
        "counts": counts,
        "url": record.run_url(uri, exp_id, run_id),
        "table_url": record.table_url(uri, exp_id, f"bench-{cfg.task}"),
        "result": result,
        "tested": tested,
        "baseline": baseline,
        "final": final,
        "run_dir": run_dir,
        "checkpoint": where,
        "adapter_bytes": size,
        "tracking_uri": tracking.redact(uri),
        "experiment": experiment,
        "degenerate": flagged,
    }
    echo(format_summary(summary))
    return summary


def logged_params(config: dict, method_config, precision: str, n_train: int) -> dict:
    """The configuration as it takes effect: the method's options once, defaults included (method_config.*,
    not the given method_options.* beside them), the resolved precision, and the epochs the step budget
    allows (max_steps overrides epochs; the epochs asked for are kept as epochs_requested when they
    differ)."""
    params = {k: v for k, v in config.items() if k != "method_options"}
    steps_per_epoch = math.ceil(n_train / config["batch_size"])
    steps = config["max_steps"] or math.ceil(config["epochs"] * steps_per_epoch)
    epochs = round(steps / steps_per_epoch, 4)
    if epochs != config["epochs"]:
        params |= {"epochs": epochs, "epochs_requested": config["epochs"]}
    return {
        **params,
        "steps_planned": steps,
        "method_config": dataclasses.asdict(method_config),
        "precision_resolved": precision,
    }


def store_checkpoint(tracker, run_dir: Path, built: Built, meta: dict) -> tuple[int, str]:
    """The adapter checkpoint, stored once: written straight into the run's artifact directory when the
    artifact store is on this machine (run_dir/adapter links to it), else written to a temporary directory,
    uploaded, and the temporary copy removed. Returns (weights bytes, where it is)."""
    local = tracker.local_artifact_dir()
    if local is not None:
        target = local / "adapter"
        size = checkpoint.save(target, built.model, built.stored_names, meta)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "adapter").symlink_to(target, target_is_directory=True)
        return size, str(run_dir / "adapter")
    with tempfile.TemporaryDirectory(prefix="bench-adapter-") as tmp:
        size = checkpoint.save(Path(tmp), built.model, built.stored_names, meta)
        tracker.log_artifacts(tmp, "adapter")
    return size, f"{tracker.artifact_uri()}/adapter"


def format_summary(s: dict) -> str:
    task, res, cfg = s["task"], s["result"], s["cfg"]
    lines = [
        f"\n== {s['run_name']} (MLflow run {s['run_id']}, experiment {s['experiment']}) ==",
        f"best epoch {res.best_epoch} of {round(res.epochs_run, 2):g} run ({res.steps} steps, stopped by "
        f"{res.stopped};"
        f" best = highest {cfg.select_metric or task.main_metric} on "
        f"{next(iter(res.best_metrics), task.dev_splits[0])}, earliest wins"
        f" ties), seed {cfg.seed}",
        f"{'split':<16}{'metric':<12}{'best epoch':>12}{'majority baseline':>20}",
    ]
    main = task.dev_splits[0]
    for split, metrics in {**res.best_metrics, **s.get("tested", {})}.items():
        for k, v in metrics.items():
            base = s["baseline"].get(k) if split == main else None
            lines.append(f"{split:<16}{k:<12}{v:>12.4f}{'' if base is None else f'{base:>20.4f}'}")
    f, c = s["final"], s["counts"]
    lines.append(
        f"method params {c['method']:,} of backbone {c['backbone']:,} "
        f"({100 * c['method'] / c['backbone']:.4f}%), trainable {c['trainable']:,}, "
        f"adapter file {s['adapter_bytes']:,} bytes"
    )
    lines.append(
        f"wall {f['wall_seconds']:.1f}s: train {f['train_seconds']:.1f}s "
        f"({f['train_samples_per_s']:.1f} samples/s), eval {f['eval_seconds']:.1f}s "
        f"({f['eval_samples_per_s']:.1f} samples/s), tracking {f['tracking_seconds']:.2f}s"
    )
    lines.append(f"adapter checkpoint: {s['checkpoint']}  |  tracking: {s['tracking_uri']}")
    local = not s["tracking_uri"].startswith(("http://", "https://"))
    lines.append(f"MLflow UI: {s['url']}" + ("  (after `bench ui`)" if local else ""))
    lines.append(f"  the task's runs, its dev metric as a column: {s['table_url']}")
    for kind, why in s.get("degenerate", {}).items():  # said last, where a reader's eye ends
        lines.append(f"degenerate ({kind}): {why}; tagged {degenerate.TAG}={kind} (reports mark it)")
    return "\n".join(lines)
