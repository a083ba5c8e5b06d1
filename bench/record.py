"""What a bench run looks like in MLflow, written once: experiment and run names, phases, tags, metric
names, container (parent) runs and the lookup of a finished run. `bench run`, sweeps, intrinsic grids,
perf and the reports all go through here; docs/tracking.md documents the schema for users who query it.
(bench/tracking.py is the how: URIs, the client, buffered logging, run states.)"""

from __future__ import annotations

from pathlib import Path

# Phases (tag `phase`): what produced a run.
SINGLE = "single"  # bench run
TRIAL = "trial"  # a sweep trial (tags study, trial)
FINAL = "final"  # a sweep's best configuration re-run on a final seed (tags study, best_trial); feeds tables
STUDY = "study"  # a sweep's container run (tag study)
INTRINSIC = "intrinsic"  # a point of an intrinsic-dimension grid (tag intrinsic)
INTRINSIC_STUDY = "intrinsic-study"  # an intrinsic grid's container run (tag intrinsic)
HEADS = "heads"  # a `bench heads` analysis (tags source: pretrained | run id | checkpoint)


def experiment_name(task: str, override: str | None = None) -> str:
    """One experiment per task unless the user names one."""
    return override or f"bench-{task}"


def run_name(method: str, model: str, task: str, seed: int) -> str:
    return f"{method}-{Path(model).name}-{task}-s{seed}"


def intrinsic_name(model: str, task: str) -> str:
    return f"intrinsic-{model.rstrip('/').split('/')[-1]}-{task}"


def run_tags(cfg, method, method_config, phase: str = SINGLE) -> dict:
    """Tags every training run carries; cfg.tags (sweeps, intrinsic grids) are added on top."""
    knob = method.knob
    from bench.tasks import get_task

    return {"method": cfg.method, "model": cfg.model, "task": cfg.task, "seed": cfg.seed,
            "config_hash": cfg.config_hash(), "phase": phase, "knob": knob or "-",
            "selected_on": selection_split(cfg, get_task(cfg.task)),
            "knob_value": getattr(method_config, knob) if knob else "-", **cfg.tags}


HOLDOUT = "holdout"  # the split carved from train when select_on=holdout


def selection_split(cfg, task) -> str:
    """The split whose main metric picks the best epoch (and that sweeps optimise)."""
    return HOLDOUT if cfg.select_on == "holdout" else task.dev_splits[0]


# Metric names.
def eval_metric(split: str, metric: str) -> str:
    """Logged at every evaluation, step = optimizer step."""
    return f"{split}_{metric}"


def test_metric(split: str, metric: str) -> str:
    """A labelled test split (CoNLL-2003), scored once at the end with the best evaluation's weights."""
    return eval_metric(split, metric)


def best_metric(split: str, metric: str) -> str:
    """At the best evaluation (what tables and sweeps read)."""
    return f"best_{split}_{metric}"


def count_metric(name: str) -> str:
    """Parameter counts: params_method, params_head, params_trainable, params_stored, params_backbone, ..."""
    return f"params_{name}"


def baseline_metric(split: str, metric: str) -> str:
    return f"baseline_{split}_{metric}"


def create_container(uri: str, experiment: str, name: str, tags: dict, params: dict) -> str:
    """A parent run that holds no training of its own (a sweep, an intrinsic grid): created FINISHED;
    children attach to it by explicit parent id, which works across processes and machines."""
    from bench import tracking

    c = tracking.client(uri)
    run = c.create_run(tracking.experiment_id(c, experiment, uri), run_name=name,
                       tags={**{k: tracking.redact(v) for k, v in tags.items()}, "mlflow.runName": name})
    tracker = tracking.Tracker(uri, run.info.run_id)
    tracker.log_params(params)
    c.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def find_runs(uri: str, experiment: str, tags: dict, status: str | None = None, max_results: int = 1) -> list:
    """Runs of `experiment` whose tags equal `tags` (and status, if given)."""
    from bench import tracking

    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return []
    where = [f"tags.{k} = '{v}'" for k, v in tags.items()]
    if status:
        where.append(f"attributes.status = '{status}'")
    return c.search_runs([exp.experiment_id], filter_string=" and ".join(where), max_results=max_results)


def finished_run(cfg, phase: str, scope: dict):
    """The FINISHED run of this (config hash, seed) in `phase` within `scope` (e.g. {"study": name}),
    or None: sweeps and grids reuse it instead of training again."""
    runs = find_runs(cfg.tracking_uri, cfg.experiment, {**scope, "phase": phase, "config_hash": cfg.config_hash(),
                                                        "seed": cfg.seed}, status="FINISHED")
    return runs[0] if runs else None


def load_runs(tracking_uri: str | None = None, phase: str | None = FINAL):
    """FINISHED runs of every experiment as a pandas DataFrame (mlflow.search_runs columns: tags.*,
    params.*, metrics.*); only `phase` runs unless phase is None."""
    import mlflow

    from bench import tracking
    from bench.errors import BenchError

    uri = tracking.resolve_uri(tracking_uri)
    tracking.check_existing(uri)
    tracking.check_reachable(uri)
    from bench.runner import quiet_libraries

    quiet_libraries()
    mlflow.set_tracking_uri(uri)
    where = "attributes.status = 'FINISHED'" + (f" and tags.phase = '{phase}'" if phase else "")
    df = mlflow.search_runs(search_all_experiments=True, filter_string=where)
    if df.empty:
        raise BenchError(f"no FINISHED{' ' + phase if phase else ''} runs in {tracking.redact(uri)}"
                         + (" (final runs come from `bench sweep finalize`; --all-runs uses every run)" if phase == FINAL
                            else " (they come from `bench intrinsic`)" if phase == INTRINSIC else ""))
    return df
