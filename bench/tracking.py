"""MLflow tracking: one run per configuration, metrics buffered off the hot path, never left RUNNING.
MLflow and the store drivers are imported inside the functions that use them: they take seconds to load,
and every command imports this module, including the ones that refuse bad input before any run starts."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import socket
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psutil

from bench.degenerate import DIVERGED
from bench.degenerate import TAG as DEGENERATE_TAG
from bench.errors import BenchError, NonFiniteLoss, StopRun, first_line
from bench.locks import file_lock
from bench.logs import quiet_libraries
from bench.record import (
    FINAL,
    INTRINSIC,
    INTRINSIC_STUDY,
    STUDY,
    VIEW_TAG,
    experiment_note,
    standard_tags,
    table_view,
)
from bench.redact import redact  # noqa: F401 - part of this module's API (callers use tracking.redact)
from bench.tasks import get_task

DEFAULT_DB = "mlflow.db"
UNSENT_DIR = "unsent-metrics"  # where a run keeps metrics the store did not accept (default: here)
CONTAINERS = (STUDY, INTRINSIC_STUDY)  # phases of runs that hold no training: sweeps and intrinsic grids


def resolve_uri(uri: str | None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else a SQLite file in the working directory."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{Path(DEFAULT_DB).resolve()}"
    if "://" not in uri:  # a bare path means a SQLite file
        return f"sqlite:///{Path(uri).resolve()}"
    if uri.startswith("sqlite:///"):  # relative SQLite paths are relative to the cwd: pin them down
        return f"sqlite:///{Path(uri[len('sqlite:///') :]).resolve()}"
    return uri


def check_existing(uri: str) -> None:
    """For commands that only read: a SQLite store that does not exist is an error, not a new empty file."""
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise BenchError(
            f"no MLflow store at {uri} (runs are tracked there by bench run, sweeps and intrinsic)"
        )


def check_reachable(uri: str) -> None:
    """Fail fast, before anything is created, on a tracking store we cannot use; then close the runs that
    lost their process (every bench command that opens a store does this)."""
    _check_usable(uri)
    close_lost_runs(uri)


def _check_usable(uri: str) -> None:
    # lazy: MLflow (see the module's docstring)
    import sqlalchemy

    scheme = urlsplit(uri).scheme
    if scheme == "sqlite":
        db = Path(uri.split(":///", 1)[-1])
        if not db.parent.is_dir() or not os.access(db.parent, os.W_OK):
            raise BenchError(f"tracking URI {uri} is not usable: {db.parent} is not a writable directory")
        if db.exists() and not db.is_file():
            raise BenchError(f"tracking URI {uri} is not usable: {db} is not a file")
        _migrate_sqlite_once(uri, db)
        return
    if scheme in ("http", "https"):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5)
        except Exception as e:
            raise BenchError(f"tracking URI {redact(uri)} is unreachable ({type(e).__name__}: {e})") from None
        return
    if scheme.startswith(("postgresql", "mysql", "mssql")):
        try:
            engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": 5})
            with engine.connect():
                pass
        except Exception as e:
            raise BenchError(f"tracking URI {redact(uri)} is unreachable ({first_line(e)})") from None
        return
    if scheme == "file":
        return
    raise BenchError(
        f"unsupported tracking URI scheme {scheme!r} in {redact(uri)} "
        f"(choices: sqlite, postgresql, mysql, http, https, file)"
    )


_MIGRATED: set[str] = set()


def _migrate_sqlite_once(uri: str, db: Path) -> None:
    """Create or upgrade a SQLite tracking store under a file lock: one process migrates, the others wait
    and then find it ready (two processes migrating one new file at once leave it half-made)."""
    # lazy: MLflow (see the module's docstring)
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    if uri in _MIGRATED:
        return

    with file_lock(db.with_name(db.name + ".lock")):
        try:
            SqlAlchemyStore(uri, (db.parent / "mlartifacts").as_uri())
        except Exception as e:  # a file that is not an MLflow database, or a broken one
            found = re.search(r"found version (\w+), but expected (\w+)", str(e))
            if found:  # an older MLflow's store, or a first migration that was interrupted
                raise BenchError(
                    f"tracking store {db} has an older or half-migrated schema (revision {found.group(1)}, "
                    f"this MLflow needs {found.group(2)}): back it up, then run `mlflow db upgrade {uri}` "
                    "(the venv's mlflow) to finish the migration"
                ) from None
            raise BenchError(
                f"tracking store {db} is not a usable MLflow SQLite database ({first_line(e)})"
            ) from None
    _MIGRATED.add(uri)


@functools.lru_cache(maxsize=32)
def client(uri: str):
    """One client per store for the process (MLflow keeps one store object per URI behind it)."""
    # lazy: MLflow (see the module's docstring)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id(
    mlflow_client, name: str, uri: str, note: str | None = None, task: str | None = None
) -> str:
    """The experiment's id, created (with `note` as its description in the UI) if it does not exist; with
    `task`, its saved runs-table view for that task added once (record.table_view)."""
    view = {}
    if task is not None:
        key, value = table_view(get_task(task))
        view = {VIEW_TAG + key: value}
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is not None:
        for key, value in view.items():
            if key not in exp.tags:
                mlflow_client.set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):  # artifacts beside the database, not wherever the cwd is
        location = (Path(uri.split(":///", 1)[1]).parent / "mlartifacts" / name).as_uri()
    try:
        # experimentKind: MLflow 3's UI opens such an experiment on its training-runs table, not the GenAI
        # overview.
        tags = {
            "mlflow.experimentKind": "custom_model_development",
            **({"mlflow.note.content": note} if note else {}),
            **view,
        }
        return mlflow_client.create_experiment(name, artifact_location=location, tags=tags)
    except Exception:  # another worker created it first
        return mlflow_client.get_experiment_by_name(name).experiment_id


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def heartbeat_seconds() -> float:
    """How often a run flushes its buffered metrics and beats (a kill loses at most this much)."""
    return float(os.environ.get("BENCH_HEARTBEAT_SECONDS", "30"))


LOST_AFTER_BEATS = 10  # a run on another host is lost after this many missed heartbeats


class Tracker:
    """One MLflow run. Metrics are buffered and sent in batches (log_batch) by a background thread, so
    training never waits on the store: every heartbeat_seconds() (sooner once 500 are waiting), and at the
    end. A batch leaves the buffer only once the store accepted it; during an outage the buffer grows (its
    oldest part goes to a local spill file beyond MAX_BUFFERED), and a run that ends while the store is
    still away writes what is left there too and says how to replay it (`bench sync`). The thread also
    stamps the `heartbeat` tag (so a SIGKILLed run can be told from a live one), and the parent's."""

    MAX_BUFFERED = 100_000  # metrics held in memory during an outage before the oldest are spilled

    def __init__(
        self, uri: str, run_id: str, parent_run_id: str | None = None, spill_dir: Path | None = None
    ):
        self.uri = uri
        self.client = client(uri)
        self.run_id = run_id
        self.parent_run_id = parent_run_id  # a container run (sweep, grid): alive while a child beats
        self.spill_path = Path(spill_dir or UNSENT_DIR) / f"{run_id}.jsonl"
        self.spilled = 0
        self._buffer = []
        self._dropped = 0  # metrics removed from the buffer's head so far (sent or spilled)
        self._lock = threading.Lock()  # the buffer (held briefly, never across network I/O)
        self._sending = threading.Lock()  # one sender at a time
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._beat: threading.Thread | None = None
        self.seconds = 0.0  # time spent talking to MLflow

    def start_heartbeat(self) -> None:
        def beat():
            while not self._stop.is_set():
                self._wake.wait(heartbeat_seconds())
                self._wake.clear()
                if self._stop.is_set():
                    break
                with contextlib.suppress(Exception):  # a store outage must not stop training
                    self.flush()
                with contextlib.suppress(Exception):
                    self.client.set_tag(self.run_id, "heartbeat", f"{time.time():.0f}")
                    if self.parent_run_id:
                        self.client.set_tag(self.parent_run_id, "heartbeat", f"{time.time():.0f}")

        self._beat = threading.Thread(target=beat, name="bench-heartbeat", daemon=True)
        self._beat.start()

    def stop_heartbeat(self, timeout: float = 10.0) -> None:
        """Stop the background thread; one stuck in the store's retries is left behind (a daemon)."""
        self._stop.set()
        self._wake.set()
        if self._beat is not None:
            self._beat.join(timeout)

    @contextlib.contextmanager
    def _timed(self):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - t

    def log_params(self, params: dict) -> None:
        # lazy: MLflow (see the module's docstring)
        from mlflow.entities import Param

        items = [Param(k, redact(v)[:6000]) for k, v in flatten(params).items()]
        with self._timed():
            for i in range(0, len(items), 100):
                self.client.log_batch(self.run_id, params=items[i : i + 100])

    def set_tags(self, tags: dict) -> None:
        # lazy: MLflow (see the module's docstring)
        from mlflow.entities import RunTag

        with self._timed():
            self.client.log_batch(self.run_id, tags=[RunTag(k, redact(v)[:5000]) for k, v in tags.items()])

    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        # lazy: MLflow (see the module's docstring)
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        with self._lock:
            self._buffer += [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
            waiting = len(self._buffer)
            if waiting > self.MAX_BUFFERED:  # a long outage: the older half goes to disk
                self._spill(waiting // 2)
        if waiting >= 500:
            self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Send every buffered metric; True when the buffer is empty. With a timeout, give up waiting after
        it (the store is away): the metrics stay buffered, nothing is lost."""
        if timeout is None:
            self._send_all()
            return True
        sender = threading.Thread(target=self._try_send, name="bench-flush", daemon=True)
        sender.start()
        sender.join(timeout)
        with self._lock:
            return not self._buffer

    def _try_send(self) -> None:
        with contextlib.suppress(Exception):
            self._send_all()

    def _send_all(self) -> None:
        with self._sending:
            while True:
                with self._lock:
                    chunk, start = self._buffer[:1000], self._dropped
                if not chunk:
                    return
                with self._timed():
                    self.client.log_batch(self.run_id, metrics=chunk)
                # accepted: only now do they leave (the head may have been spilled meanwhile)
                with self._lock:
                    done = max(0, start + len(chunk) - self._dropped)
                    del self._buffer[:done]
                    self._dropped += done

    def _spill(self, n: int) -> None:
        """Append the buffer's oldest n metrics to the spill file (held under self._lock)."""
        head = self._buffer[:n]
        self.spill_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.spill_path, "a") as f:
            for m in head:
                f.write(json.dumps({"run_id": self.run_id, "key": m.key, "value": m.value,
                                    "timestamp": m.timestamp, "step": m.step}) + "\n")  # fmt: skip
        del self._buffer[:n]
        self._dropped += n
        self.spilled += n

    def close(self, timeout: float = 15.0) -> None:
        """At the end of the run: stop the background thread and send what is left, or (the store still away
        after `timeout` s) spill it and say on stderr where it is and how to replay it."""
        self.stop_heartbeat()
        if not self.flush(timeout):
            with self._lock:
                self._spill(len(self._buffer))
        if self.spilled:
            print(
                f"bench: {self.spilled} metrics of run {self.run_id} did not reach the tracking store; "
                f"kept in {self.spill_path}: replay them with `bench sync {self.spill_path}`",
                file=sys.stderr,
            )

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        with self._timed():
            self.client.log_artifacts(self.run_id, local_dir, artifact_path)

    def artifact_uri(self) -> str:
        return self.client.get_run(self.run_id).info.artifact_uri

    def local_artifact_dir(self) -> Path | None:
        """The run's artifact directory when it is a path on this machine (file:// or a plain path)."""
        uri = self.artifact_uri()
        parts = urlsplit(uri)
        if parts.scheme == "file":
            return Path(unquote(parts.path))
        if (
            not parts.scheme
        ):  # a plain path; any scheme (s3://, mlflow-artifacts:/ of a proxying server) is remote
            return Path(uri)
        return None

    def log_text(self, text: str, artifact_file: str) -> None:
        with self._timed():
            self.client.log_text(self.run_id, redact(text), artifact_file)


@contextlib.contextmanager
def tracked_run(
    uri: str,
    experiment: str,
    run_name: str,
    tags: dict,
    parent_run_id: str | None = None,
    spill_dir: Path | None = None,
):
    """Yields a Tracker. The run ends FINISHED, FAILED (error tag set) or KILLED (interrupted):
    never left RUNNING by an exception or a SIGTERM/Ctrl-C."""
    # lazy: MLflow (see the module's docstring)
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    c = client(uri)
    exp_id = experiment_id(c, experiment, uri, experiment_note(experiment), tags.get("task"))
    all_tags = {**standard_tags(), MLFLOW_RUN_NAME: run_name, **tags}
    if parent_run_id:  # explicit parent id: nesting that works across processes and machines
        all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id

    all_tags |= {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": f"{time.time():.0f}"}
    run = c.create_run(exp_id, run_name=run_name, tags={k: redact(v) for k, v in all_tags.items()})
    tracker = Tracker(uri, run.info.run_id, parent_run_id, spill_dir)
    tracker.start_heartbeat()
    try:
        yield tracker
    except BaseException as e:
        tracker.close()

        # Interrupted (Ctrl-C, SIGTERM) or stopped on purpose (pruning): KILLED. Anything else: FAILED.
        status = "KILLED" if isinstance(e, (KeyboardInterrupt, StopRun)) else "FAILED"
        with contextlib.suppress(Exception):
            reason = "stopped_by" if isinstance(e, StopRun) else "error"
            tracker.set_tags(
                {
                    reason: f"{type(e).__name__}: {first_line(e)}"[:5000],
                    "state": getattr(e, "state", status.lower()),
                }
                | ({DEGENERATE_TAG: DIVERGED} if isinstance(e, NonFiniteLoss) else {})
            )
        with contextlib.suppress(Exception):
            c.set_terminated(run.info.run_id, status)
        raise
    else:
        tracker.close()
        c.set_terminated(run.info.run_id, "FINISHED")


def replay_unsent(uri: str, path: Path) -> dict[str, int]:
    """Send a spill file's metrics to their runs (`bench sync`); returns metrics sent per run id. The file is
    removed once every line was accepted; replaying twice logs nothing twice (MLflow drops exact repeats)."""
    # lazy: MLflow (see the module's docstring)
    from mlflow.entities import Metric

    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BenchError(f"cannot read {path} ({getattr(e, 'strerror', None) or type(e).__name__})") from None
    by_run: dict[str, list] = {}
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            metric = Metric(str(d["key"]), float(d["value"]), int(d["timestamp"]), int(d["step"]))
            by_run.setdefault(str(d["run_id"]), []).append(metric)
        except (ValueError, KeyError, TypeError):
            raise BenchError(
                f"{path} line {i} is not an unsent-metric record: not a bench spill file"
            ) from None
    c = client(uri)
    for run_id in by_run:
        try:
            c.get_run(run_id)
        except Exception:  # noqa: BLE001 - MLflow raises its own exception types for a missing run
            raise BenchError(
                f"run {run_id} of {path} is not in {redact(uri)}: pass its --tracking-uri"
            ) from None
    for run_id, metrics in by_run.items():
        for i in range(0, len(metrics), 1000):
            c.log_batch(run_id, metrics=metrics[i : i + 1000])
    path.unlink()
    return {run_id: len(m) for run_id, m in by_run.items()}


_REAPED: set[str] = set()


def close_lost_runs(uri: str) -> list[str]:
    """Close runs left RUNNING by a process that is gone (SIGKILL, the OOM killer, a lost node) as KILLED
    with tag state=lost: on this host at once (its pid is dead, or reused by a younger process), on
    another host once its heartbeat is LOST_AFTER_BEATS intervals old. Done once per store and process."""
    if uri in _REAPED:
        return []
    _REAPED.add(uri)

    c = client(uri)
    try:
        exps = [e.experiment_id for e in c.search_experiments()]
        running = (
            c.search_runs(exps, filter_string="attributes.status = 'RUNNING'", max_results=1000)
            if exps
            else []
        )
    except Exception:  # noqa: BLE001 - reaping is housekeeping: never fail the command for it
        return []
    host, now, closed = socket.gethostname(), time.time(), []
    for run in running:
        tags = run.data.tags
        if "pid" not in tags or "heartbeat" not in tags:
            continue  # not a bench run with a heartbeat (older runs, other tools)
        beat_age = now - float(tags["heartbeat"])
        if tags.get("phase") in CONTAINERS and beat_age < LOST_AFTER_BEATS * heartbeat_seconds():
            continue  # a sweep or grid whose workers (maybe on other hosts) still beat it
        if tags.get("host") == host:
            pid = int(tags["pid"])
            try:
                alive = psutil.Process(pid).create_time() <= run.info.start_time / 1000 + 1
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                alive = False
            why = f"process {pid} on {host} is gone"
        else:
            alive = beat_age < LOST_AFTER_BEATS * heartbeat_seconds()
            why = f"no heartbeat from {tags.get('host')} for {beat_age:.0f}s"
        if alive:
            continue
        with contextlib.suppress(Exception):
            c.set_tag(run.info.run_id, "state", "lost")
            c.set_tag(run.info.run_id, "error", f"run lost: {why}; closed by a later bench command")
            c.set_terminated(run.info.run_id, "KILLED")
            closed.append(run.info.run_id)
    return closed


def create_container(uri: str, experiment: str, name: str, tags: dict, params: dict) -> str:
    """A parent run that holds no training of its own (a sweep, an intrinsic grid): created FINISHED, set
    RUNNING while its workers work (update_container); children attach to it by explicit parent id, which
    works across processes and machines."""
    c = client(uri)
    run = c.create_run(
        experiment_id(c, experiment, uri, experiment_note(experiment), tags.get("task")),
        run_name=name,
        tags={**standard_tags(), **{k: redact(v) for k, v in tags.items()}, "mlflow.runName": name},
    )
    tracker = Tracker(uri, run.info.run_id)
    tracker.log_params(params)
    c.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def set_shared_tag(uri: str, run_id: str, key: str, value: str) -> None:
    """Set a tag that another process may set at the same moment (a sweep's parent run): MLflow's SQL store
    inserts a tag it does not find, and two such inserts collide (IntegrityError, seen with two
    `bench sweep finalize` ending together); the second try finds the row and updates it."""
    c = client(uri)
    try:
        c.set_tag(run_id, key, value)
    except Exception:  # noqa: BLE001 - MLflow wraps the SQL error in its own exception types
        c.set_tag(run_id, key, value)


def update_container(uri: str, run_id: str, metrics: dict, status: str | None = None) -> None:
    """Numeric progress of a parent run (sortable and chartable in the UI) and its state: RUNNING while its
    study works, FINISHED once the budget is done. Never fails the work for it."""
    # lazy: MLflow (see the module's docstring)
    from mlflow.entities import Metric

    c = client(uri)
    with contextlib.suppress(Exception):
        now = int(time.time() * 1000)
        c.log_batch(
            run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None]
        )
        if status == "RUNNING":  # this process works for it now: lost-run closing checks this pid
            for key, value in owner_tags().items():
                c.set_tag(run_id, key, value)
            if c.get_run(run_id).info.status != "RUNNING":
                c.update_run(run_id, status="RUNNING")
        elif status in ("FINISHED", "FAILED", "KILLED"):
            c.set_terminated(run_id, status)


def owner_tags() -> dict:
    return {"host": socket.gethostname(), "pid": str(os.getpid()), "heartbeat": f"{time.time():.0f}"}


@contextlib.contextmanager
def container_work(uri: str, run_id: str):
    """Around the work a process does for a container run: if the process stops (SIGTERM, Ctrl-C, an error)
    while it was the last to work for the container, the container ends KILLED or FAILED with the reason,
    not RUNNING. Another worker that stamped it since keeps it RUNNING (and closes it when it ends)."""
    try:
        yield
    except BaseException as e:
        status = "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED"
        with contextlib.suppress(Exception):
            c = client(uri)
            run = c.get_run(run_id)
            tags = run.data.tags
            mine = tags.get("pid") == str(os.getpid()) and tags.get("host") == socket.gethostname()
            if run.info.status == "RUNNING" and mine:
                c.set_tag(run_id, "error", redact(f"{type(e).__name__}: {first_line(e)}")[:5000])
                c.set_terminated(run_id, status)
        raise


def log_datasets(uri: str, run_id: str, task_name: str, sources: dict) -> None:
    """Each split the run read as an MLflow dataset input (the UI's Dataset column): its source (local file
    or hub dataset), a digest of its content, and its role (train / dev / test) as the context tag."""
    # lazy: MLflow (see the module's docstring)
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    inputs = []
    for split, (source, fingerprint, rows) in sources.items():
        if source.startswith("hf:"):
            parts = source[3:].split("/")
            src = HuggingFaceDatasetSource(
                path="/".join(parts[:-2]) if len(parts) > 2 else parts[0],
                config_name=parts[-2] if len(parts) > 2 else None,
                split=parts[-1],
            )
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

    c = client(uri)
    for attempt in range(4):
        try:
            c.log_inputs(run_id, datasets=inputs)
            return
        except Exception as e:  # noqa: BLE001 - bookkeeping, not training
            error = e
            time.sleep(0.2 * (attempt + 1))

    c.set_tag(run_id, "dataset_inputs_error", f"{type(error).__name__}: {first_line(error)}"[:500])


def find_runs(uri: str, experiment: str, tags: dict, status: str | None = None, max_results: int = 1) -> list:
    """Runs of `experiment` whose tags equal `tags` (and status, if given)."""
    c = client(uri)
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
    runs = find_runs(
        cfg.tracking_uri,
        cfg.experiment,
        {**scope, "phase": phase, "config_hash": cfg.config_hash(), "seed": cfg.seed},
        status="FINISHED",
    )
    return runs[0] if runs else None


def copy_run(uri: str, source, run_name: str, tags: dict, parent_run_id: str) -> str:
    """A new FINISHED run under `parent_run_id` holding `source`'s params, metric histories, tags and
    artifacts, with `tags` on top: a final seed whose exact configuration and seed a trial already trained
    is that trial's computation, recorded again under the final phase instead of trained twice (tag
    `reused_run` names the source). Returns the new run's id."""
    # lazy: MLflow (see the module's docstring)
    from mlflow.entities import Metric, Param
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

    c = client(uri)
    src = source.info.run_id
    kept = {k: v for k, v in source.data.tags.items() if k not in (MLFLOW_RUN_NAME, MLFLOW_PARENT_RUN_ID)}
    new_tags = {
        **kept,
        **tags,
        "reused_run": src,
        MLFLOW_RUN_NAME: run_name,
        MLFLOW_PARENT_RUN_ID: parent_run_id,
    }
    run_id = c.create_run(source.info.experiment_id, run_name=run_name, tags=new_tags).info.run_id
    try:
        params = [Param(k, v) for k, v in source.data.params.items()]
        for i in range(0, len(params), 100):  # MLflow's per-batch limit on params
            c.log_batch(run_id, params=params[i : i + 100])
        history = [m for key in source.data.metrics for m in c.get_metric_history(src, key)]
        history = [Metric(m.key, m.value, m.timestamp, m.step) for m in history]
        for i in range(0, len(history), 1000):  # and on metrics
            c.log_batch(run_id, metrics=history[i : i + 1000])
        with tempfile.TemporaryDirectory(prefix="bench-copy-") as tmp:
            if c.list_artifacts(src):
                c.log_artifacts(run_id, c.download_artifacts(src, "", tmp))
    except BaseException:
        c.set_terminated(run_id, "FAILED")
        raise
    c.set_terminated(run_id, "FINISHED")
    return run_id


def runs_frame(uri: str, where: str, experiments: list[str] | None = None):
    """Runs matching `where` in the named experiments (default: every active one) as a pandas DataFrame
    with mlflow.search_runs' columns (run_id, status, start_time, end_time, metrics.*, params.*, tags.*).
    Through a client of `uri`: mlflow.search_runs reads the process-wide tracking URI, which a library
    function must not set."""
    # lazy: MLflow (see the module's docstring); pandas, only the commands that tabulate runs need it
    import pandas as pd
    from mlflow.entities import ViewType

    c = client(uri)
    if experiments is None:
        ids = [e.experiment_id for e in c.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    else:
        ids = [e.experiment_id for e in map(c.get_experiment_by_name, experiments) if e is not None]
    rows, token = [], None
    while ids:
        page = c.search_runs(ids, where, max_results=50_000, page_token=token)
        for r in page:
            rows.append(
                {
                    "run_id": r.info.run_id,
                    "experiment_id": r.info.experiment_id,
                    "status": r.info.status,
                    "start_time": r.info.start_time,
                    "end_time": r.info.end_time,
                    **{f"metrics.{k}": v for k, v in r.data.metrics.items()},
                    **{f"params.{k}": v for k, v in r.data.params.items()},
                    **{f"tags.{k}": v for k, v in r.data.tags.items()},
                }
            )
        token = page.token
        if not token:
            break
    df = pd.DataFrame(rows)
    for column in ("start_time", "end_time"):  # milliseconds, as mlflow.search_runs turns them into times
        if column in df:
            df[column] = pd.to_datetime(df[column], unit="ms", utc=True)
    return df


def load_runs(tracking_uri: str | None = None, phase: str | None = FINAL):
    """FINISHED runs of every experiment as a pandas DataFrame (runs_frame's columns); only `phase` runs
    unless phase is None."""
    uri = resolve_uri(tracking_uri)
    check_existing(uri)
    check_reachable(uri)

    quiet_libraries()
    where = "attributes.status = 'FINISHED'" + (f" and tags.phase = '{phase}'" if phase else "")
    df = runs_frame(uri, where)
    if df.empty:
        raise BenchError(
            f"no FINISHED{' ' + phase if phase else ''} runs in {redact(uri)}"
            + (
                " (final runs come from `bench sweep finalize`; --all-runs uses every run)"
                if phase == FINAL
                else " (they come from `bench intrinsic`)"
                if phase == INTRINSIC
                else ""
            )
        )
    return df
