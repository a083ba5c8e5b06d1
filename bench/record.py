"""What a bench run looks like in MLflow, written once: experiment and run names, phases, tags and metric
names. `bench run`, sweeps, intrinsic grids, perf and the reports all name things through here;
docs/tracking.md documents the schema for users who query it. Nothing here talks to MLflow:
bench/tracking.py does (URIs, the client, buffered logging, run states, container runs, lookups)."""

from __future__ import annotations

import getpass
import hashlib
import json
import sys
from pathlib import Path

from bench.environment import git_state
from bench.errors import BenchError
from bench.tasks import get_task

# Phases (tag `phase`): what produced a run.
SINGLE = "single"  # bench run
TRIAL = "trial"  # a sweep trial (tags study, trial)
FINAL = "final"  # a sweep's best configuration re-run on a final seed (tags study, best_trial); feeds tables
STUDY = "study"  # a sweep's container run (tag study)
INTRINSIC = "intrinsic"  # a point of an intrinsic-dimension grid (tag intrinsic)
INTRINSIC_STUDY = "intrinsic-study"  # an intrinsic grid's container run (tag intrinsic)
HEADS = "heads"  # a `bench heads` analysis (tags source: pretrained | run id | checkpoint)


DATA_DIGEST = "data_digest"  # tag: the content of the splits a run read (reports count a seed once per data)


def data_digest(sources: dict) -> str:
    """12 hex characters over every split's content fingerprint: the same data wherever it was read from."""
    body = "|".join(f"{split}:{fingerprint}" for split, (_, fingerprint, _) in sorted(sources.items()))
    return hashlib.sha1(body.encode()).hexdigest()[:12]


def experiment_name(task: str, override: str | None = None) -> str:
    """One experiment per task unless the user names one (checked: it names a folder of the store)."""
    if override is not None:
        check_experiment(override)
    return override or f"bench-{task}"


def check_experiment(name: str) -> None:
    """MLflow places an experiment's artifacts at <artifact root>/<name>: a name with a path separator, '..',
    a leading '~' or a control character would write outside the store's root."""
    bad = (
        not name.strip()
        or any(sep in name for sep in ("/", "\\"))
        or name in (".", "..")
        or name.startswith("~")
        or any(ord(c) < 32 for c in name)
    )
    if bad:
        raise BenchError(
            f"experiment name {name!r} is not allowed: use a plain name (no '/', '\\', '..', leading '~' or "
            "control characters), e.g. bench-rte-ablation"
        )


def run_name(method: str, model: str, task: str, seed: int, tags: dict | None = None) -> str:
    """What tells runs apart comes first (the UI cuts long names; a study's children share the rest):
    t<trial>-s<seed>-<method>-<model>-<task> (a trial, zero-padded so names sort in trial order),
    final-s<seed>-... (a final seed), <knob><value>-s<seed>-... (a curve point),
    <method>-<model>-<task>-s<seed> (bench run)."""
    tags = tags or {}
    what = f"{method}-{Path(model).name}-{task}"
    if tags.get("trial") is not None:
        return f"t{int(tags['trial']):03d}-s{seed}-{what}"
    if tags.get("phase") == FINAL:
        return f"final-s{seed}-{what}"
    if tags.get("phase") == INTRINSIC and tags.get("knob", "-") != "-":
        point = "".join(c for c in f"{tags['knob']}{tags['knob_value']}" if c.isalnum() or c in "._=")
        return f"{point}-s{seed}-{what}"
    return f"{what}-s{seed}"


def standard_tags(command: str | None = None) -> dict:
    """MLflow's own source, commit and user tags (the UI's Source, Version and User columns): bench creates
    runs through the client, which does not add them the way mlflow.start_run does."""
    # lazy: this module names things for `bench --help`'s parsers too, which must not load MLflow
    from mlflow.utils.mlflow_tags import (
        MLFLOW_GIT_COMMIT,
        MLFLOW_SOURCE_NAME,
        MLFLOW_SOURCE_TYPE,
        MLFLOW_USER,
    )

    if command is None:
        args = [a for a in sys.argv[1:3] if not a.startswith("-")]
        command = "bench " + " ".join(args[:2]) if args else "bench"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    sha = git_state()["git_sha"]
    return {
        MLFLOW_SOURCE_NAME: command,
        MLFLOW_SOURCE_TYPE: "LOCAL",
        MLFLOW_USER: user,
        **({MLFLOW_GIT_COMMIT: sha} if sha != "unknown" else {}),
    }


def experiment_note(experiment: str) -> str:
    """The experiment's description in the MLflow UI: what its runs are and how to find the usual ones."""
    return (
        f"{experiment}: bench runs. Tag `phase` says what made each run: single (bench run), trial (a sweep "
        "trial), final (a sweep's best configuration on a final seed; report tables read these), study (a "
        "sweep's parent, with its budget and result metrics), intrinsic / intrinsic-study (curve points and "
        "their parent). Useful filters: tags.phase = 'final'; tags.study = '<name>'; tags.method = 'lora'. "
        "Columns: metrics.best_<split>_<metric> (at the best evaluation), metrics.params_method (the "
        "method's "
        "trainable parameters). Schema: docs/tracking.md."
    )


def intrinsic_name(model: str, task: str) -> str:
    return f"intrinsic-{model.rstrip('/').split('/')[-1]}-{task}"


def run_tags(cfg, method, method_config, phase: str = SINGLE) -> dict:
    """Tags every training run carries; cfg.tags (sweeps, intrinsic grids) are added on top."""
    knob = method.knob

    return {
        "method": cfg.method,
        "model": cfg.model,
        "task": cfg.task,
        "seed": cfg.seed,
        "config_hash": cfg.config_hash(),
        "phase": phase,
        "knob": knob or "-",
        "selected_on": selection_split(cfg, get_task(cfg.task)),
        "knob_value": getattr(method_config, knob) if knob else "-",
        **cfg.tags,
    }


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


def ui_base(uri: str) -> str:
    """The MLflow UI's address: the tracking server's own, or `bench ui`'s for a database store."""
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    return f"{ui_base(uri)}/#/experiments/{experiment_id}/runs/{run_id}"


VIEW_TAG = (
    "mlflow.sharedViewState."  # MLflow 3's UI: an experiment tag holding a saved view of its runs table
)


def _view(name: str, task, **state) -> str:
    """A saved runs-table view as MLflow 3's UI stores it in an experiment tag (the envelope its own Share
    button writes): the task's dev metric, method, phase, knob, seed, lr and the method's parameter count
    as columns. MLflow's UI keeps column choices in the browser: a saved view lets a link open with them."""
    split, metric = task.dev_splits[0], task.main_metric
    columns = [f"metrics.`{best_metric(split, metric)}`", "tags.`method`", "tags.`phase`", "tags.`knob`"]
    columns += ["tags.`knob_value`", "tags.`seed`", "params.`lr`", f"metrics.`{count_metric('method')}`"]
    full = {
        "searchFilter": "",
        "orderByKey": f"metrics.`{best_metric(split, metric)}`",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": columns + ["attributes.`Duration`"],
        **state,
    }
    return json.dumps({"name": name, "createdAt": 0, "updatedAt": 0, "state": json.dumps(full)})


def table_view(task) -> tuple[str, str]:
    """The experiment's saved view for `task` (tag key suffix, value): every run, best first."""
    name = f"bench {task.name}: {task.dev_splits[0]} {task.main_metric}, best first"
    return f"bench-{task.name}", _view(name, task)


def study_view(task, study: str, parent_run_id: str) -> tuple[str, str]:
    """A sweep's saved view: its runs in name order (final-s1.., the parent, t000-s1, t001-s1, ...). The UI
    lists them flat once sorted; runsExpanded opens the parent when the sort is removed."""
    state = {
        "searchFilter": f"tags.study = '{study}'",
        "orderByKey": "tags.`mlflow.runName`",
        "orderByAsc": True,
        "runsExpanded": {parent_run_id: True},
    }
    key = "study-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in study)[:200]
    return key, _view(f"sweep {study}", task, **state)


def table_url(uri: str, experiment_id: str, view_key: str) -> str:
    """The experiment's runs table opened on a saved view (workflowType: MLflow 3's UI otherwise opens its
    GenAI overview when the browser last used that)."""
    query = f"workflowType=machine_learning&viewStateShareKey={view_key}"
    return f"{ui_base(uri)}/#/experiments/{experiment_id}/runs?{query}"
