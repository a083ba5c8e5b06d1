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


def run_name(method: str, model: str, task: str, seed: int, tags: dict | None = None) -> str:
    """Distinct and sortable within a study or grid: <method>-<model>-<task>[-t<trial>|-final|-<knob><value>]-s<seed>
    (trials zero-padded, so names sort in trial order)."""
    tags = tags or {}
    name = f"{method}-{Path(model).name}-{task}"
    if tags.get("trial") is not None:
        name += f"-t{int(tags['trial']):03d}"
    elif tags.get("phase") == FINAL:
        name += "-final"
    elif tags.get("phase") == INTRINSIC and tags.get("knob", "-") != "-":
        name += "-" + "".join(c for c in f"{tags['knob']}{tags['knob_value']}" if c.isalnum() or c in "._=")
    return f"{name}-s{seed}"


def standard_tags(command: str | None = None) -> dict:
    """MLflow's own source, commit and user tags (the UI's Source, Version and User columns): bench creates
    runs through the client, which does not add them the way mlflow.start_run does."""
    import getpass
    import sys

    from mlflow.utils.mlflow_tags import (
        MLFLOW_GIT_COMMIT,
        MLFLOW_SOURCE_NAME,
        MLFLOW_SOURCE_TYPE,
        MLFLOW_USER,
    )

    from bench.environment import git_state

    if command is None:
        args = [a for a in sys.argv[1:3] if not a.startswith("-")]
        command = "bench " + " ".join(args[:2]) if args else "bench"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    sha = git_state()["git_sha"]
    return {MLFLOW_SOURCE_NAME: command, MLFLOW_SOURCE_TYPE: "LOCAL", MLFLOW_USER: user,
            **({MLFLOW_GIT_COMMIT: sha} if sha != "unknown" else {})}


def experiment_note(experiment: str) -> str:
    """The experiment's description in the MLflow UI: what its runs are and how to find the usual ones."""
    return (f"{experiment}: bench runs. Tag `phase` says what made each run: single (bench run), trial (a sweep "
            "trial), final (a sweep's best configuration on a final seed; report tables read these), study (a "
            "sweep's parent, with its budget and result metrics), intrinsic / intrinsic-study (curve points and "
            "their parent). Useful filters: tags.phase = 'final'; tags.study = '<name>'; tags.method = 'lora'. "
            "Columns: metrics.best_<split>_<metric> (at the best evaluation), metrics.params_method (the method's "
            "trainable parameters). Schema: docs/tracking.md.")


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
    """A parent run that holds no training of its own (a sweep, an intrinsic grid): created FINISHED, set
    RUNNING while its workers work (update_container); children attach to it by explicit parent id, which
    works across processes and machines."""
    from bench import tracking

    c = tracking.client(uri)
    run = c.create_run(tracking.experiment_id(c, experiment, uri, experiment_note(experiment)), run_name=name,
                       tags={**standard_tags(), **{k: tracking.redact(v) for k, v in tags.items()},
                             "mlflow.runName": name})
    tracker = tracking.Tracker(uri, run.info.run_id)
    tracker.log_params(params)
    c.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def update_container(uri: str, run_id: str, metrics: dict, status: str | None = None) -> None:
    """Numeric progress of a parent run (sortable and chartable in the UI) and its state: RUNNING while its
    study works, FINISHED once the budget is done. Never fails the work for it."""
    import contextlib
    import time

    from bench import tracking

    c = tracking.client(uri)
    with contextlib.suppress(Exception):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        c.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None])
        if status == "RUNNING" and c.get_run(run_id).info.status != "RUNNING":
            c.update_run(run_id, status="RUNNING")
        elif status in ("FINISHED", "FAILED", "KILLED"):
            c.set_terminated(run_id, status)


def log_datasets(uri: str, run_id: str, task_name: str, sources: dict) -> None:
    """Each split the run read as an MLflow dataset input (the UI's Dataset column): its source (local file
    or hub dataset), a digest of its content, and its role (train / dev / test) as the context tag."""
    import hashlib
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    from bench import tracking

    inputs = []
    for split, (source, fingerprint, rows) in sources.items():
        if source.startswith("hf:"):
            parts = source[3:].split("/")
            src = HuggingFaceDatasetSource(path="/".join(parts[:-2]) if len(parts) > 2 else parts[0],
                                           config_name=parts[-2] if len(parts) > 2 else None, split=parts[-1])
        else:
            with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are the local file
                warnings.simplefilter("ignore")
                src = resolve_dataset_source(str(Path(source).resolve()))
        digest = hashlib.sha1(fingerprint.encode()).hexdigest()[:12]  # MLflow keeps at most 36 characters
        ds = MetaDataset(src, name=f"{task_name}-{split} ({rows} rows)", digest=digest)
        role = "train" if split == "train" else "test" if split.startswith("test") else "dev"
        inputs.append(DatasetInput(ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", role)]))
    # Workers starting together race to insert the same dataset row (MLflow's get-or-create is not atomic: a
    # UNIQUE constraint error in the loser); the retry finds the row. Dataset inputs never fail a run.
    import time

    c = tracking.client(uri)
    for attempt in range(4):
        try:
            c.log_inputs(run_id, datasets=inputs)
            return
        except Exception as e:  # noqa: BLE001 - bookkeeping, not training
            error = e
            time.sleep(0.2 * (attempt + 1))
    from bench.errors import first_line

    c.set_tag(run_id, "dataset_inputs_error", f"{type(error).__name__}: {first_line(error)}"[:500])


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    """Where the run is in the MLflow UI: the server's own page, or `bench ui`'s for a local store."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


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
