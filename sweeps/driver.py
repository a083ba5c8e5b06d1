"""Optuna sweeps: create / work / finalize / status / ls on a study shared through its storage.

One study per (method, model, task, search-space hash); one MLflow parent run per study (its id in the
study's user attrs) and one child run per trial and per final seed, created with an explicit parent id
so nesting works across processes and machines. Workers share nothing but the storage: any number of
`bench sweep work STUDY` processes on any number of machines."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
import warnings
from pathlib import Path

import optuna
import yaml

from bench import record, tracking
from bench.config import NOT_TRAINING
from bench.errors import BenchError, NonFiniteLoss, StopRun, first_line
from bench.locks import file_lock
from bench.logs import quiet_libraries, route_library_logs
from bench.presets import resolve
from bench.record import FINAL, TRIAL, best_metric, selection_split
from bench.redact import MASK, redact, redact_tree
from bench.resolve import build_config
from bench.runner import run
from bench.tasks import get_task
from bench.tracking import client, finished_run, update_container
from sweeps.space import centre, default_space_file, load_space, put, sample, space_hash

STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql")
PRUNERS = ("median", "halving", "none")


def storage_url(storage: str | None, output_dir: str = "runs") -> str:
    """Default: a SQLite file under the output directory (zero setup, several local workers)."""
    if storage:
        return storage
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(Path(output_dir) / 'sweeps.db').resolve()}"


def open_storage(url: str, heartbeat: int = 10):
    """RDB storage with a heartbeat: a trial whose worker stops beating for 3 intervals is failed, its
    MLflow run closed, and the trial re-queued (up to 3 times)."""
    route_library_logs()  # Optuna's notices ("A new study created") to the log file

    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in STORAGE_SCHEMES:
        raise BenchError(
            f"unsupported sweep storage {redact(url)!r} (choices: {', '.join(STORAGE_SCHEMES)} URLs)"
        )
    engine = {"connect_args": {"timeout": 60}} if scheme == "sqlite" else {"pool_pre_ping": True}
    lock = contextlib.nullcontext()
    if scheme == "sqlite":  # one process creates a new SQLite study database, the others wait for it
        db = Path(url.split(":///", 1)[-1])
        if not db.parent.is_dir():
            raise BenchError(f"sweep storage {url} is not usable: {db.parent} is not a directory")
        lock = file_lock(db.with_name(db.name + ".lock"))
    try:
        with lock, warnings.catch_warnings():  # Optuna marks the heartbeat options experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=heartbeat,
                grace_period=3 * heartbeat,
                heartbeat_stale_trial_callback=_on_stale,
            )
    except Exception as e:
        raise BenchError(f"sweep storage {redact(url)} is unreachable ({first_line(e)})") from None


def _on_stale(study, trial) -> None:
    """A worker died mid-trial (SIGKILL, lost machine): close its MLflow run, then retry the trial."""
    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id:
        with contextlib.suppress(Exception):
            c = client(study_tracking_uri(study.user_attrs))
            if c.get_run(run_id).info.status == "RUNNING":
                c.set_tag(run_id, "state", "lost")
                c.set_tag(run_id, "error", "worker lost: no heartbeat; the trial was failed and retried")
                c.set_terminated(run_id, "KILLED")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)(study, trial)


def study_tracking_uri(attrs: dict) -> str:
    """The study's MLflow URI. A study never stores a credential: when its URI held one, the stored copy
    is redacted and the worker takes the real one from $MLFLOW_TRACKING_URI (`--tracking-uri` sets it)."""
    stored = attrs["tracking_uri"]
    if MASK not in stored:
        return stored
    given = os.environ.get("MLFLOW_TRACKING_URI", "")
    if given and redact(given) == stored:
        return given
    raise BenchError(
        f"the study's tracking URI {stored} holds a credential that bench does not store: pass "
        "--tracking-uri (or set MLFLOW_TRACKING_URI) with it"
    )


def make_pruner(name: str):
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise BenchError(f"unknown pruner {name!r} (choices: {', '.join(PRUNERS)})")


def load(name: str, storage_obj, pruner: str | None = None):
    names = optuna.get_all_study_names(storage=storage_obj)
    if name not in names:
        raise BenchError(f"no study {name!r} in this storage (choices: {', '.join(sorted(names)) or 'none'})")
    attrs = optuna.load_study(study_name=name, storage=storage_obj).user_attrs
    return optuna.load_study(
        study_name=name, storage=storage_obj, pruner=make_pruner(pruner or attrs.get("pruner", "median"))
    )


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
) -> str:
    """Create the study (or find it, if it exists: create is idempotent) and its MLflow parent run.
    Options fixed in `base` (--set) are removed from the search space. The default name hashes everything
    that changes the trials (space, fixed options, data); resuming a study whose stored options differ from
    the given ones is a one-line error listing the differences, unless resume_anyway (the stored ones win)."""
    if trials < 1 or seeds_final < 1:
        raise BenchError(f"--trials {trials} and --seeds-final {seeds_final} must be at least 1")
    make_pruner(pruner)
    cfg = build_config(base, {"method": method, "model": model, "task": task})
    space = load_space(space_file or default_space_file(cfg.method), cfg.method)
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
    identity = {"space": space, "base": _trial_options(base)}
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
    uri = tracking.resolve_uri(cfg.tracking_uri)
    tracking.check_reachable(uri)
    experiment = record.experiment_name(cfg.task, cfg.experiment)
    budget = {"trials": trials, "seeds_final": seeds_final, "search_seed": search_seed, "pruner": pruner}
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
    for key, value in {
        "method": cfg.method,
        "model": cfg.model,
        "task": cfg.task,
        "space": space,
        "space_hash": space_hash(space),
        "base": kept_base,
        "n_trials": trials,
        "seeds_final": seeds_final,
        "search_seed": search_seed,
        "pruner": pruner,
        "mlflow_parent_run_id": parent,
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
        f"created study {name} ({trials} trials, {seeds_final} final seeds, pruner {pruner}) in "
        f"{tracking.redact(url)}; MLflow parent run {parent}"
    )
    return name


# Options that do not change what a trial trains: left out of a study's identity.
def _trial_options(base: dict) -> dict:
    return {k: v for k, v in (base or {}).items() if k not in NOT_TRAINING}


def _canon(value):
    return json.dumps(value, sort_keys=True, default=str)


def _short(value) -> str:
    text = _canon(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _counts(study, exclude: int | None = None) -> dict:

    out = {s: 0 for s in ("COMPLETE", "RUNNING", "WAITING", "PRUNED", "FAIL", "surplus")}
    for t in study.get_trials(deepcopy=False):
        if t.number == exclude:
            continue
        key = "surplus" if t.user_attrs.get("surplus") else t.state.name
        out[key] = out.get(key, 0) + 1
    return out


def _run_config(study, layer: dict, seed: int, phase: str, extra_tags: dict):
    a = study.user_attrs
    tags = {"study": study.study_name, "phase": phase, **extra_tags}
    return build_config(
        a["base"],
        {"method": a["method"], "model": a["model"], "task": a["task"]},
        layer,
        {"seed": seed, "tracking_uri": study_tracking_uri(a), "experiment": a["experiment"], "tags": tags},
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


def objective_for(study, force: bool = False, echo=print):
    a = study.user_attrs

    class Pruned(StopRun):
        state = "pruned"

    def objective(trial):
        c = _counts(study, exclude=trial.number)
        if c["COMPLETE"] + c["RUNNING"] >= a["n_trials"]:
            trial.set_user_attr("surplus", True)  # another worker took the last slot a moment ago
            raise optuna.TrialPruned("budget reached")
        cfg = _run_config(study, sample(trial, a["space"]), a["search_seed"], TRIAL, {"trial": trial.number})
        split, metric = _main_metric(cfg)
        trial.set_user_attr("config_hash", cfg.config_hash())
        previous = None if force else _finished_run(cfg, study.study_name, TRIAL)
        if previous is not None:  # the same (config hash, seed) already finished: reuse, do not retrain
            trial.set_user_attr("reused_run", previous.info.run_id)
            echo(
                f"trial {trial.number}: config {cfg.config_hash()} seed {cfg.seed} already finished "
                f"(run {previous.info.run_id}); reusing it"
            )
            return _best_value(previous, cfg)

        def on_eval(epoch, metrics):
            trial.report(metrics[split][metric], epoch)
            if trial.should_prune():
                raise Pruned(f"pruned at epoch {epoch}: {split} {metric} {metrics[split][metric]:.4f}")

        try:
            # The run's own report stays in MLflow: the console gets one line per trial (trial_line).
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
                f"is FAILED "
                "with an `error` tag)"
            )
            raise
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
) -> int:
    """Run trials until the study has its budget of COMPLETE trials (or this worker ran n_trials).
    Trials of dead workers are failed after 3 missed heartbeats and retried by whoever is working."""
    quiet_libraries()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial: our one line, not Optuna's traceback
    study = load(name, open_storage(storage_url(storage, output_dir), heartbeat))
    objective = objective_for(study, force, echo)
    report_progress(study, "RUNNING")
    ran = 0
    while n_trials is None or ran < n_trials:
        with (
            warnings.catch_warnings()
        ):  # fail_stale_trials is marked experimental; its behaviour is what we need
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        c = _counts(study)
        if c["COMPLETE"] >= study.user_attrs["n_trials"]:
            break
        if c["FAIL"] >= 2 * study.user_attrs["n_trials"]:  # a broken configuration, not bad luck: stop
            raise BenchError(
                f"study {name}: {c['FAIL']} trials failed (see their MLflow `error` tags); "
                f"fix the search space or base options"
            )
        if c["COMPLETE"] + c["RUNNING"] >= study.user_attrs["n_trials"] and not c["WAITING"]:
            time.sleep(heartbeat)  # the rest are running elsewhere; wait in case one of them dies
            continue
        study.optimize(objective, n_trials=1, catch=(NonFiniteLoss,), callbacks=[trial_line(echo)])
        ran += 1
        report_progress(study, "RUNNING")
    done = _counts(study)["COMPLETE"] >= study.user_attrs["n_trials"]
    report_progress(study, "FINISHED" if done else None)
    return ran


def report_progress(study, status: str | None) -> None:
    """The study's state on its MLflow parent run, as numbers: trials complete / pruned / failed /
    running, the budget, the best value so far; RUNNING while workers work, FINISHED once the budget is
    done."""
    a, c = study.user_attrs, _counts(study)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    metrics = {
        "trials_complete": c["COMPLETE"],
        "trials_pruned": c["PRUNED"],
        "trials_failed": c["FAIL"],
        "trials_running": c["RUNNING"],
        "trials_budget": a["n_trials"],
        "best_value": max(t.value for t in done) if done else None,
    }
    update_container(study_tracking_uri(a), a["mlflow_parent_run_id"], metrics, status)


def trial_line(echo):
    """One console line per finished trial: its number, what was sampled, the result and the best so far
    (or why it was pruned)."""

    def callback(study, trial) -> None:
        a = study.user_attrs
        if trial.user_attrs.get("surplus"):
            return
        c = _counts(study)
        head = f"trial {trial.number} ({c['COMPLETE']}/{a['n_trials']} complete) {a['method']} " + " ".join(
            f"{k}={_fmt(v)}" for k, v in trial.params.items()
        )
        if trial.state.name == "COMPLETE":
            echo(f"{head} -> {trial.value:.4f} (best {study.best_value:.4f})")
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


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def finalize(
    name: str,
    storage: str | None = None,
    seeds: int | None = None,
    output_dir: str = "runs",
    force: bool = False,
    echo=print,
) -> dict:
    """Re-run the best trial's configuration on seeds 1..K (phase=final). A seed that already finished
    is skipped unless forced. Only final runs feed the report tables."""
    quiet_libraries()
    study = load(name, open_storage(storage_url(storage, output_dir)))
    a = study.user_attrs
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        raise BenchError(f"study {name} has no complete trial yet: run `bench sweep work {name}` first")
    best = study.best_trial
    layer: dict = {}
    for key, value in best.params.items():
        put(layer, key, value)
    seeds = seeds or a["seeds_final"]
    values = []
    for seed in range(1, seeds + 1):
        cfg = _run_config(study, layer, seed, FINAL, {"best_trial": best.number})
        split, metric = _main_metric(cfg)
        previous = None if force else _finished_run(cfg, name, FINAL)
        if previous is not None:
            echo(f"final seed {seed}: already finished (run {previous.info.run_id}); skipped")
            values.append(_best_value(previous, cfg))
            continue
        out = run(cfg, progress=False, parent_run_id=a["mlflow_parent_run_id"], echo=echo)
        values.append(out["result"].best_metrics[split][metric])
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

    uri = study_tracking_uri(a)
    tracking.client(uri).set_tag(a["mlflow_parent_run_id"], "final_metric", summary["metric"])
    update_container(
        uri,
        a["mlflow_parent_run_id"],
        {
            "final_mean": summary["mean"],
            "final_std": summary["std"],
            "final_n": len(values),
            "best_trial": best.number,
        },
    )
    echo(
        f"{name}: best trial {best.number} {best.params}\n  final {summary['metric']} over {len(values)} "
        f"seeds: "
        f"{summary['mean']:.4f} ± {summary['std']:.4f} (sample std) [{', '.join(f'{v:.4f}' for v in values)}]"
    )
    return summary


def status(name: str, storage: str | None = None, output_dir: str = "runs") -> str:
    url = storage_url(storage, output_dir)
    study = load(name, open_storage(url))
    a, c = study.user_attrs, _counts(study)
    lines = [
        f"study {name} ({a['method']} / {a['model']} / {a['task']}) in {redact(url)}",
        f"budget: {c['COMPLETE']}/{a['n_trials']} complete trials; final seeds {a['seeds_final']}; "
        f"pruner {a['pruner']}; search seed {a['search_seed']}",
        "trials: " + ", ".join(f"{k.lower()} {v}" for k, v in c.items() if v),
        f"MLflow: experiment {a['experiment']}, parent run {a['mlflow_parent_run_id']}",
    ]
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    if done:
        split, metric = _main_metric(_run_config(study, {}, 1, TRIAL, {}))
        best = study.best_trial
        lines.append(f"best so far: trial {best.number}, {split} {metric} {best.value:.4f}, {best.params}")
    return "\n".join(lines)


def list_studies(storage: str | None = None, output_dir: str = "runs") -> str:
    """One line per study; every column says what it counts."""
    url = storage_url(storage, output_dir)
    st = open_storage(url)
    summaries = optuna.get_all_study_summaries(storage=st)
    if not summaries:
        return f"no studies in {redact(url)}"
    lines = [
        f"studies in {redact(url)}; complete/budget = COMPLETE trials of the trial budget; best = the "
        "best complete trial's value of the study's metric (selection split)",
        f"{'study':<44}{'complete/budget':>16}{'pruned':>8}{'failed':>8}{'running':>9}  best",
    ]
    for s in summaries:
        c = _counts(optuna.load_study(study_name=s.study_name, storage=st))
        metric = s.user_attrs.get("metric", "")
        best = f"{s.best_trial.value:.4f}{' ' + metric if metric else ''}" if s.best_trial else "-"
        lines.append(
            f"{s.study_name:<44}{str(c['COMPLETE']) + '/' + str(s.user_attrs.get('n_trials', '?')):>16}"
            f"{c['PRUNED']:>8}{c['FAIL']:>8}{c['RUNNING']:>9}  {best}"
        )
    return "\n".join(lines)
