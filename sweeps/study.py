"""A sweep's study and its storage: opening it (SQLite by default, PostgreSQL or MySQL to share it between
machines, with heartbeats that fail and retry a dead worker's trial), counting its trials and what they
spent, and saying where it stands. Light on purpose: `bench sweep status` and `bench sweep ls` answer from
here without loading a model library; sweeps/driver.py creates studies and runs their trials."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import warnings
from pathlib import Path

import optuna

from bench.errors import BenchError, first_line
from bench.locks import file_lock
from bench.logs import route_library_logs
from bench.redact import MASK, redact
from bench.tracking import client, update_container

STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql")
PRUNERS = ("median", "halving", "none")


def storage_url(storage: str | None, output_dir: str = "runs") -> str:
    """Default: a SQLite file under the output directory (zero setup, several local workers)."""
    if storage:
        return storage
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(Path(output_dir) / 'sweeps.db').resolve()}"


def open_storage(url: str, heartbeat: int = 10, tracking_uri: str | None = None):
    """RDB storage with a heartbeat: a trial whose worker stops beating for 3 intervals is failed, its
    MLflow run closed (in the store `tracking_uri` names, else the study's), and the trial re-queued (up to
    3 times)."""
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
                heartbeat_stale_trial_callback=functools.partial(_on_stale, tracking_uri=tracking_uri),
            )
    except Exception as e:
        raise BenchError(f"sweep storage {redact(url)} is unreachable ({first_line(e)})") from None


def _on_stale(study, trial, tracking_uri: str | None = None) -> None:
    """A worker died mid-trial (SIGKILL, lost machine): close its MLflow run, then retry the trial."""
    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id:
        with contextlib.suppress(Exception):
            c = client(study_tracking_uri(study.user_attrs, tracking_uri))
            if c.get_run(run_id).info.status == "RUNNING":
                c.set_tag(run_id, "state", "lost")
                c.set_tag(run_id, "error", "worker lost: no heartbeat; the trial was failed and retried")
                c.set_terminated(run_id, "KILLED")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)(study, trial)


def study_tracking_uri(attrs: dict, given: str | None = None) -> str:
    """The study's MLflow URI. A study never stores a credential: when its URI held one, the stored copy
    is redacted and the caller gives the real one (`--tracking-uri`, else $MLFLOW_TRACKING_URI)."""
    stored = attrs["tracking_uri"]
    if MASK not in stored:
        return stored
    given = given or os.environ.get("MLFLOW_TRACKING_URI", "")
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


class Study:
    """One sweep's study, its storage opened once: the options it was created with (`attrs`), its trials
    and what they spent, its MLflow store and parent run, and where it stands. `tracking_uri` is the
    credentialed URI when the stored one is redacted."""

    def __init__(
        self,
        name: str,
        storage: str | None = None,
        output_dir: str = "runs",
        heartbeat: int = 10,
        tracking_uri: str | None = None,
        pruner: str | None = None,
    ):
        self.name = name
        self.url = storage_url(storage, output_dir)
        self.storage = open_storage(self.url, heartbeat, tracking_uri)
        self.optuna = load(name, self.storage, pruner)
        self._given_uri = tracking_uri

    @functools.cached_property
    def tracking_uri(self) -> str:
        """Resolved when first needed: `bench sweep status` describes a study without its credential."""
        return study_tracking_uri(self.attrs, self._given_uri)

    @property
    def attrs(self) -> dict:
        """The study's user attributes, read from the storage (another worker may have added `final`)."""
        return self.optuna.user_attrs

    @property
    def parent_run_id(self) -> str:
        return self.attrs["mlflow_parent_run_id"]

    def trials(self, states=None) -> list:
        return self.optuna.get_trials(deepcopy=False, states=states)

    def complete(self) -> list:
        return self.trials((optuna.trial.TrialState.COMPLETE,))

    def counts(self, exclude: int | None = None) -> dict:
        return trial_counts(self.trials(), exclude)

    def spent(self, what: str) -> float:
        """Sum of a per-trial record over the trials: `seconds` (wall seconds each used, a reused run its
        own) or `flops` (estimated training FLOPs of finished trials)."""
        return sum(t.user_attrs.get(what, 0.0) for t in self.trials())

    def degenerate_trials(self) -> int:
        """Trials whose run was flagged degenerate (the objective records the flag on complete trials)."""
        return sum(1 for t in self.trials() if t.user_attrs.get("degenerate"))

    def budget_done(self, counts: dict | None = None) -> bool:
        a = self.attrs
        counts = counts or self.counts()
        spent_all = a.get("budget_seconds") is not None and self.spent("seconds") >= a["budget_seconds"]
        return counts["COMPLETE"] >= a["n_trials"] or spent_all

    def lost(self, error: BaseException) -> BenchError | None:
        """The one-line error for `error` when the storage stopped answering (its database dropped, the
        server gone): Optuna then raises from deep inside a trial, often a chain of several exceptions.
        None when the storage still answers (the error is something else)."""
        try:
            self.trials()
            return None
        except Exception as e:  # noqa: BLE001 - any failure to read the study back means its storage is gone
            cause = e
            while cause.__cause__ is not None:
                cause = cause.__cause__
            return BenchError(f"study {self.name}: its storage stopped answering ({first_line(cause)})")

    def report_progress(self, status: str | None) -> None:
        """The study's state on its MLflow parent run, as numbers: trials complete / pruned / failed /
        running, the budget, the best value so far; RUNNING while workers work, FINISHED once the budget
        is done."""
        a, c, done = self.attrs, self.counts(), self.complete()
        metrics = {
            "trials_complete": c["COMPLETE"],
            "trials_pruned": c["PRUNED"],
            "trials_failed": c["FAIL"],
            "trials_running": c["RUNNING"],
            "trials_budget": a["n_trials"],
            "trials_degenerate": self.degenerate_trials(),
            "seconds_spent": self.spent("seconds"),
            "flops_spent": self.spent("flops"),
            "budget_seconds": a.get("budget_seconds"),
            "best_value": max(t.value for t in done) if done else None,
        }
        update_container(self.tracking_uri, self.parent_run_id, metrics, status)

    def describe(self) -> str:
        """`bench sweep status`: the budget, the trials by state, the best trial, the final seeds."""
        a, c = self.attrs, self.counts()
        budget = f"budget: {c['COMPLETE']}/{a['n_trials']} complete trials"
        if a.get("budget_seconds"):
            budget += f", {self.spent('seconds'):,.0f}/{a['budget_seconds']:g} s of trials"
        trials = ", ".join(f"{k.lower()} {v}" for k, v in c.items() if v)
        degenerate = self.degenerate_trials()
        lines = [
            f"study {self.name} ({a['method']} / {a['model']} / {a['task']}) in {redact(self.url)}",
            f"{budget}; final seeds {a['seeds_final']}; pruner {a['pruner']}; search seed {a['search_seed']}",
            f"trials: {trials}" + (f" ({degenerate} degenerate)" if degenerate else ""),
            f"MLflow: experiment {a['experiment']}, parent run {a['mlflow_parent_run_id']}"
            + (f", runs: {a['mlflow_view']}" if a.get("mlflow_view") else ""),
        ]
        done = self.complete()
        if done:
            best = self.optuna.best_trial
            label = "best" if self.budget_done(c) else "best so far"
            lines.append(
                f"{label}: trial {best.number}, {a['metric']} {best.value:.4f}, {params_text(best.params)}"
            )
        final = a.get("final")
        if final:
            lines.append(
                f"final: {final['metric']} {final['mean']:.4f} ± {final['std']:.4f} (sample std) over "
                f"{final['n']} seeds of trial {final['best_trial']}"
            )
        elif done:
            lines.append(f"final: none recorded in the study yet (bench sweep finalize {self.name})")
        return "\n".join(lines)


def trial_counts(trials: list, exclude: int | None = None) -> dict:
    """Trials by state; `surplus` ones (started after another worker took the last slot) apart."""
    out = {s: 0 for s in ("COMPLETE", "RUNNING", "WAITING", "PRUNED", "FAIL", "surplus")}
    for t in trials:
        if t.number == exclude:
            continue
        key = "surplus" if t.user_attrs.get("surplus") else t.state.name
        out[key] = out.get(key, 0) + 1
    return out


def quiet_heartbeat_failures() -> None:
    """Optuna's heartbeat thread dies with a traceback when the storage goes away; the worker's main loop
    says it in one line (Study.lost), so that thread's failure is not printed twice. Installed once per
    process (a worker that runs work() again does not wrap the hook again)."""
    default = threading.excepthook
    if getattr(default, "bench_quiet_heartbeat", False):
        return

    def hook(args):
        if "_record_heartbeat" not in getattr(args.thread, "name", ""):
            default(args)

    hook.bench_quiet_heartbeat = True
    threading.excepthook = hook


def params_text(params: dict) -> str:
    """Sampled values as the console shows them everywhere: name=value, floats to 3 significant figures."""
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def status(name: str, storage: str | None = None, output_dir: str = "runs") -> str:
    """`bench sweep status`: read from the storage alone."""
    return Study(name, storage, output_dir).describe()


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
        c = trial_counts(optuna.load_study(study_name=s.study_name, storage=st).get_trials(deepcopy=False))
        metric = s.user_attrs.get("metric", "")
        best = f"{s.best_trial.value:.4f}{' ' + metric if metric else ''}" if s.best_trial else "-"
        lines.append(
            f"{s.study_name:<44}{str(c['COMPLETE']) + '/' + str(s.user_attrs.get('n_trials', '?')):>16}"
            f"{c['PRUNED']:>8}{c['FAIL']:>8}{c['RUNNING']:>9}  {best}"
        )
    return "\n".join(lines)
