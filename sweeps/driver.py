"""Optuna sweeps: create / work / finalize / status / ls on a study shared through its storage.

One study per (method, model, task, search-space hash); one MLflow parent run per study (its id in the
study's user attrs) and one child run per trial and per final seed, created with an explicit parent id
so nesting works across processes and machines. Workers share nothing but the storage: any number of
`bench sweep work STUDY` processes on any number of machines."""

from __future__ import annotations

import json
import statistics
import time
import warnings
from pathlib import Path

import optuna
import yaml

from bench import degenerate, record, tracking
from bench.config import ADDED_FIELDS, FIELDS, NOT_TRAINING
from bench.errors import BenchError, NonFiniteLoss, StopRun, first_line
from bench.locks import file_lock
from bench.logs import quiet_libraries
from bench.presets import resolve
from bench.record import FINAL, TRIAL, best_metric, selection_split
from bench.redact import redact, redact_tree
from bench.resolve import build_config
from bench.runner import run
from bench.tasks import get_task
from bench.tracking import finished_run, update_container
from sweeps.space import centre, check_attachable, method_space, put, sample, space_hash
from sweeps.study import Study, make_pruner, open_storage, params_text, quiet_heartbeat_failures, storage_url


def create(
    method: str,
    model: str,
    task: str,
    base: dict,
    space_file: str | None = None,
    storage: str | None = None,
    trials: int = 20,
    seeds_final: int = 3,
    search_seed: int = 1,
    pruner: str = "median",
    name: str | None = None,
    echo=print,
    preset: str | None = None,
    resume_anyway: bool = False,
    budget_seconds: float | None = None,
) -> str:
    """Create the study (or find it, if it exists: create is idempotent) and its MLflow parent run.
    Options fixed in `base` (--set) are removed from the search space. The default name hashes everything
    that changes the trials (space, fixed options, data); resuming a study whose stored options differ from
    the given ones is a one-line error listing the differences, unless resume_anyway (the stored ones win).
    budget_seconds: also stop once the trials' training seconds add up to it (the same compute for every
    method; `trials` then caps the count)."""
    if trials < 1 or seeds_final < 1:
        raise BenchError(f"--trials {trials} and --seeds-final {seeds_final} must be at least 1")
    if budget_seconds is not None and not budget_seconds > 0:
        raise BenchError(f"--budget-seconds {budget_seconds} must be a positive number of seconds")
    make_pruner(pruner)
    cfg = build_config(base, {"method": method, "model": model, "task": task})
    space = method_space(cfg.method, space_file)
    if preset:  # centre the space on the paper's values; the preset's other values become fixed options
        space, preset_fixed = centre(space, resolve(preset, cfg.method, cfg.model, cfg.task)[0])
        base = {
            **preset_fixed,
            **base,
            "method_options": {**preset_fixed.get("method_options", {}), **base.get("method_options", {})},
            "tags": {**base.get("tags", {}), "preset": preset},
        }
        cfg = build_config(base, {"method": method, "model": model, "task": task})
    fixed = set(base) | {f"method.{k}" for k in base.get("method_options", {})}
    space = {k: v for k, v in space.items() if k not in fixed}
    check_attachable(space, cfg)
    identity = {"space": space, "base": _trial_options(base)}
    if budget_seconds is not None:  # a compute budget changes which trials run (no key: names stay as before)
        identity["budget_seconds"] = budget_seconds
    kept_base = redact_tree({k: v for k, v in base.items() if k != "tracking_uri"})  # the URI is stored apart
    name = name or f"{cfg.method}-{Path(cfg.model).name}-{cfg.task}-{space_hash(identity)}"
    url = storage_url(storage, cfg.output_dir)
    st = open_storage(url)
    if name in optuna.get_all_study_names(storage=st):
        stored = optuna.load_study(study_name=name, storage=st).user_attrs
        given = {
            "method": cfg.method,
            "model": cfg.model,
            "task": cfg.task,
            "space": space,
            "base": _trial_options(base),
            "n_trials": trials,
            "seeds_final": seeds_final,
            "search_seed": search_seed,
            "pruner": pruner,
            "budget_seconds": budget_seconds,
        }
        diff = [
            f"{k}: stored {_short(stored.get(k))}, given {_short(v)}"
            for k, v in given.items()
            if _canon(stored.get(k) if k != "base" else _trial_options(stored.get("base", {}))) != _canon(v)
        ]
        if diff and not resume_anyway:
            raise BenchError(
                f"study {name} exists with other options ({'; '.join(diff)}): give a new --name, or "
                "--resume-anyway to resume it with its stored options"
            )
        echo(f"study {name} exists: resuming it" + (" with its stored options" if diff else ""))
        return name
    uri = cfg.tracking_uri
    tracking.check_reachable(uri)
    experiment = record.experiment_name(cfg.task, cfg.experiment)
    budget = {"trials": trials, "seeds_final": seeds_final, "search_seed": search_seed, "pruner": pruner}
    if budget_seconds is not None:
        budget["seconds"] = budget_seconds
    parent = tracking.create_container(
        uri,
        experiment,
        f"sweep-{name}",
        {"study": name, "phase": record.STUDY, "method": cfg.method, "model": cfg.model, "task": cfg.task},
        {
            "study": name,
            "storage": tracking.redact(url),
            "space_hash": space_hash(space),
            "budget": budget,
            "base": kept_base,
        },
    )
    c = tracking.client(uri)
    c.log_text(parent, yaml.safe_dump(space, sort_keys=True), "search_space.yaml")
    try:
        study = optuna.create_study(study_name=name, storage=st, direction="maximize")
    except optuna.exceptions.DuplicatedStudyError:  # another process created it a moment ago
        c.delete_run(parent)
        return name
    experiment_id = c.get_run(parent).info.experiment_id
    view_key, view = record.study_view(get_task(cfg.task), name, parent)
    c.set_experiment_tag(experiment_id, record.VIEW_TAG + view_key, view)
    view_url = redact(record.table_url(uri, experiment_id, view_key))
    for key, value in {
        "method": cfg.method,
        "model": cfg.model,
        "task": cfg.task,
        "space": space,
        "space_hash": space_hash(space),
        "base": kept_base,
        # the options added to bench over time, as a trial without them in `base` takes them now: a study
        # resumed after a later default changed keeps training its trials alike
        "defaults": {k: FIELDS[k].default for k in ADDED_FIELDS},
        "n_trials": trials,
        "seeds_final": seeds_final,
        "search_seed": search_seed,
        "pruner": pruner,
        "budget_seconds": budget_seconds,
        "mlflow_parent_run_id": parent,
        "mlflow_view": view_url,
        "tracking_uri": tracking.redact(uri),
        "experiment": experiment,
        "metric": " ".join(_main_metric(cfg)),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }.items():
        study.set_user_attr(key, value)
    with warnings.catch_warnings():  # set_metric_names is marked experimental; optuna-dashboard reads it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([" ".join(_main_metric(cfg))])
    echo(
        f"created study {name} ({trials} trials"
        + (f" or {budget_seconds:g} training seconds, whichever ends first" if budget_seconds else "")
        + f", {seeds_final} final seeds, pruner {pruner}) in "
        f"{tracking.redact(url)}; MLflow parent run {parent}"
    )
    echo(f"its runs in the MLflow UI: {view_url}")
    return name


# Options that do not change what a trial trains: left out of a study's identity.
def _trial_options(base: dict) -> dict:
    return {k: v for k, v in (base or {}).items() if k not in NOT_TRAINING}


def _canon(value):
    return json.dumps(value, sort_keys=True, default=str)


def _short(value) -> str:
    text = _canon(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _run_config(study: Study, layer: dict, seed: int, phase: str, extra_tags: dict):
    a = study.attrs
    tags = {"study": study.name, "phase": phase, **extra_tags}
    # A study created before its options' defaults were recorded trains at those options' earlier behaviour,
    # as its runs count (bench.config.ADDED_FIELDS).
    return build_config(
        a.get("defaults", ADDED_FIELDS),
        a["base"],
        {"method": a["method"], "model": a["model"], "task": a["task"]},
        layer,
        {"seed": seed, "tracking_uri": study.tracking_uri, "experiment": a["experiment"], "tags": tags},
    )


def _finished_run(cfg, study_name: str, phase: str):
    return finished_run(cfg, phase, {"study": study_name})


def _main_metric(cfg):
    task = get_task(cfg.task)
    return selection_split(
        cfg, task
    ), cfg.select_metric or task.main_metric  # what picks the epoch is optimised


def _best_value(run, cfg) -> float:
    return run.data.metrics[best_metric(*_main_metric(cfg))]


def objective_for(study: Study, force: bool = False, echo=print):
    a = study.attrs

    class Pruned(StopRun):
        state = "pruned"

    def objective(trial):
        c = study.counts(exclude=trial.number)
        if c["COMPLETE"] + c["RUNNING"] >= a["n_trials"] or study.budget_done(c):
            trial.set_user_attr("surplus", True)  # another worker took the last slot a moment ago
            raise optuna.TrialPruned("budget reached")
        cfg = _run_config(study, sample(trial, a["space"]), a["search_seed"], TRIAL, {"trial": trial.number})
        split, metric = _main_metric(cfg)
        trial.set_user_attr("config_hash", cfg.config_hash())
        previous = None if force else _finished_run(cfg, study.name, TRIAL)
        if previous is not None:  # the same (config hash, seed) already finished: reuse, do not retrain
            trial.set_user_attr("reused_run", previous.info.run_id)
            trial.set_user_attr("seconds", float(previous.data.metrics.get("wall_seconds", 0.0)))
            trial.set_user_attr("flops", float(previous.data.metrics.get("train_flops", 0.0)))
            echo(
                f"trial {trial.number}: config {cfg.config_hash()} seed {cfg.seed} already finished "
                f"(run {previous.info.run_id}); reusing it"
            )
            return _best_value(previous, cfg)

        def on_eval(epoch, metrics):
            trial.report(metrics[split][metric], epoch)
            echo(f"  trial {trial.number} epoch {epoch:g}: {split} {metric} {metrics[split][metric]:.4f}")
            if trial.should_prune():
                raise Pruned(f"pruned at epoch {epoch}: {split} {metric} {metrics[split][metric]:.4f}")

        echo(f"trial {trial.number} started: {params_text(trial.params)} (seed {cfg.seed})")
        started = time.perf_counter()
        try:
            # The run's own report stays in MLflow: the console gets a line per evaluation and one per trial.
            out = run(
                cfg,
                progress=False,
                parent_run_id=a["mlflow_parent_run_id"],
                on_eval=on_eval,
                on_start=lambda run_id: trial.set_user_attr("mlflow_run_id", run_id),
                echo=lambda *_: None,
            )
        except Pruned as e:
            raise optuna.TrialPruned(str(e)) from None
        except Exception as e:  # one line here; Optuna's own report (with a traceback) is silenced in work()
            echo(
                f"trial {trial.number} failed: {type(e).__name__}: {redact(first_line(e))} (its MLflow run "
                "is FAILED with an `error` tag)"
            )
            raise
        finally:  # what the trial cost counts against a compute budget, pruned and failed trials included
            trial.set_user_attr("seconds", time.perf_counter() - started)
        trial.set_user_attr("flops", float(out["final"]["train_flops"]))
        if out["degenerate"]:  # counted on the study's parent run; the trial's run carries the tag
            trial.set_user_attr("degenerate", degenerate.tag_value(out["degenerate"]))
        return out["result"].best_metrics[split][metric]

    return objective


def work(
    name: str,
    storage: str | None = None,
    n_trials: int | None = None,
    heartbeat: int = 10,
    output_dir: str = "runs",
    force: bool = False,
    echo=print,
    tracking_uri: str | None = None,
) -> int:
    """Run trials until the study has its budget of COMPLETE trials (or this worker ran n_trials).
    Trials of dead workers are failed after 3 missed heartbeats and retried by whoever is working.
    tracking_uri: the credentialed MLflow URI when the study stores a redacted one."""
    quiet_libraries()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial: our one line, not Optuna's traceback
    study = Study(name, storage, output_dir, heartbeat, tracking_uri)
    objective = objective_for(study, force, echo)
    quiet_heartbeat_failures()
    study.report_progress("RUNNING")
    with tracking.container_work(study.tracking_uri, study.parent_run_id):
        ran = work_loop(study, objective, n_trials, heartbeat, echo)
    study.report_progress("FINISHED" if study.budget_done() else None)
    return ran


def work_loop(study: Study, objective, n_trials: int | None, heartbeat: int, echo) -> int:
    ran, budget = 0, study.attrs["n_trials"]
    while n_trials is None or ran < n_trials:
        with warnings.catch_warnings():  # fail_stale_trials is marked experimental; it does what we need
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study.optuna)
        c = study.counts()
        if study.budget_done(c):
            break
        if c["FAIL"] >= 2 * budget:  # a broken configuration, not bad luck: stop
            raise BenchError(
                f"study {study.name}: {c['FAIL']} trials failed (see their MLflow `error` tags); "
                f"fix the search space or base options"
            )
        if c["COMPLETE"] + c["RUNNING"] >= budget and not c["WAITING"]:
            time.sleep(heartbeat)  # the rest are running elsewhere; wait in case one of them dies
            continue
        try:
            study.optuna.optimize(
                objective, n_trials=1, catch=(NonFiniteLoss,), callbacks=[trial_line(study, echo)]
            )
        except Exception as e:
            lost = study.lost(e)
            if lost is None:
                raise
            raise lost from None
        ran += 1
        study.report_progress("RUNNING")
    return ran


def trial_line(study: Study, echo):
    """One console line per finished trial: its number, what was sampled, the result and the best so far
    (or why it was pruned)."""
    a = study.attrs

    def callback(_, trial) -> None:
        if trial.user_attrs.get("surplus"):
            return
        c = study.counts()
        head = (
            f"trial {trial.number} ({c['COMPLETE']}/{a['n_trials']} complete) {a['method']} "
            + params_text(trial.params)
        )
        if trial.state.name == "COMPLETE":
            flag = trial.user_attrs.get("degenerate")
            echo(
                f"{head} -> {trial.value:.4f} (best {study.optuna.best_value:.4f})"
                + (f" degenerate: {flag}" if flag else "")
            )
        elif trial.state.name == "PRUNED":
            echo(
                f"{head} -> pruned at epoch {max(trial.intermediate_values, default='?')}"
                + (
                    f" ({trial.intermediate_values[max(trial.intermediate_values)]:.4f})"
                    if trial.intermediate_values
                    else ""
                )
            )

    return callback


def finalize(
    name: str,
    storage: str | None = None,
    seeds: int | None = None,
    output_dir: str = "runs",
    force: bool = False,
    echo=print,
    tracking_uri: str | None = None,
) -> dict:
    """Re-run the best trial's configuration on seeds 1..K (phase=final). A seed that already finished
    is skipped unless forced. Only final runs feed the report tables."""
    quiet_libraries()
    study = Study(name, storage, output_dir, tracking_uri=tracking_uri)
    a = study.attrs
    if not study.complete():
        raise BenchError(f"study {name} has no complete trial yet: run `bench sweep work {name}` first")
    best = study.optuna.best_trial
    layer: dict = {}
    for key, value in best.params.items():
        put(layer, key, value)
    seeds = seeds or a["seeds_final"]
    values = []
    locks = Path(output_dir)
    locks.mkdir(parents=True, exist_ok=True)
    for seed in range(1, seeds + 1):
        cfg = _run_config(study, layer, seed, FINAL, {"best_trial": best.number})
        split, metric = _main_metric(cfg)
        # Two finalize commands at once (on this machine or one sharing the output directory) take turns per
        # seed: the second finds the seed finished instead of training it again.
        with file_lock(locks / f".finalize-{name}-s{seed}.lock"):
            previous = None if force else _finished_run(cfg, name, FINAL)
            if previous is not None:
                values.append(_best_value(previous, cfg))
                echo(
                    f"final seed {seed}: already finished (run {previous.info.run_id}) {split} {metric} "
                    f"{values[-1]:.4f}"
                )
                continue
            # the best trial ran this very configuration and seed: record its run as final, not retrain
            trained = None if force else _finished_run(cfg, name, TRIAL)
            if trained is not None:
                run_id = tracking.copy_run(
                    study.tracking_uri,
                    trained,
                    cfg.run_name(),
                    cfg.tags | {"phase": FINAL},
                    study.parent_run_id,
                )
                values.append(_best_value(trained, cfg))
                echo(
                    f"final seed {seed}: {split} {metric} {values[-1]:.4f} (run {run_id}: trial "
                    f"{trained.data.tags.get('trial')}'s run {trained.info.run_id}, the same configuration "
                    "and seed, recorded as final instead of trained again)"
                )
                continue
            out = run(cfg, progress=False, parent_run_id=study.parent_run_id, echo=lambda *_: None)
        values.append(out["result"].best_metrics[split][metric])
        flag = out["degenerate"] and f" degenerate: {degenerate.tag_value(out['degenerate'])}"
        echo(
            f"final seed {seed}: {split} {metric} {values[-1]:.4f} (run {out['run_id']}, "
            f"{out['final']['wall_seconds']:.0f} s){flag or ''}"
        )
    summary = {
        "study": name,
        "best_trial": best.number,
        "params": best.params,
        "metric": f"{split} {metric}",
        "values": values,
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }

    study.optuna.set_user_attr("final", {k: summary[k] for k in ("metric", "mean", "std", "n", "best_trial")})
    tracking.set_shared_tag(study.tracking_uri, study.parent_run_id, "final_metric", summary["metric"])
    update_container(
        study.tracking_uri,
        study.parent_run_id,
        {
            "final_mean": summary["mean"],
            "final_std": summary["std"],
            "final_n": len(values),
            "best_trial": best.number,
        },
    )
    echo(
        f"{name}: best trial {best.number} "
        + params_text(best.params)
        + f"\n  final {summary['metric']} over {len(values)} "
        f"seeds: "
        f"{summary['mean']:.4f} ± {summary['std']:.4f} (sample std) [{', '.join(f'{v:.4f}' for v in values)}]"
    )
    return summary
