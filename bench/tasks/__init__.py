"""Task registry: one declarative YAML entry per task in this folder (and in plugin directories'
tasks/), found by walking the folder as lm-eval finds its tasks. What a kind of task does (encoding,
head, predictions, metrics, trivial baseline) lives in bench/kinds, one module per kind.

Label lists follow the Hugging Face dataset's ClassLabel order, so hub integer labels and local file
label strings map to the same index."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError, choices_error
from bench.kinds import get_kind
from bench.plugins import load_registry

CLASSIFICATION, REGRESSION, TAGGING = "classification", "regression", "tagging"
KINDS = (CLASSIFICATION, REGRESSION, TAGGING)
LOCAL_FORMATS = ("tsv", "conll")
TASK_DIR = Path(__file__).parent


@dataclass(frozen=True)
class Source:
    """Where a task's splits come from: a hub dataset, or files in a local directory."""

    text: tuple  # text columns: names, or 0-based indices for headerless TSV; () for CoNLL files
    label: str | int | None
    splits: dict  # split -> hub split name (hub) or tuple of accepted file names (local)
    dataset: str = ""  # hub only
    config: str | None = None  # hub only
    dir: str = ""  # local only: the task's directory name under a data root (RTE, conll2003)
    format: str = "tsv"  # local only: tsv | conll
    headerless: bool = False  # local TSV without a header row (CoLA)


@dataclass(frozen=True)
class PredictSpec:
    """Unlabelled splits (GLUE test) that `bench predict` writes in the GLUE server's format."""

    hub: dict  # split -> hub split name
    files: dict  # split -> local file name
    text: tuple  # local text columns (header names)
    index: str  # local index column
    submission: dict  # split -> the server's file name (RTE.tsv, MNLI-m.tsv)
    optional: tuple = ()  # splits skipped, with a line saying so, when their file is absent (MNLI: GLUE's AX)


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # classification | regression | tagging (a module in bench/kinds)
    labels: tuple[str, ...]  # empty for regression
    metrics: tuple[str, ...]  # metric names logged per dev split
    main_metric: str  # picks the best epoch (on the first dev split); higher is better
    score: tuple[str, ...]  # metrics averaged into the task's `glue_score`
    hub: Source
    local: Source
    report_group: str  # tasks averaged together in report tables ("GLUE")
    report_order: int
    report_columns: (
        dict  # column label -> logged metric (best_<metric>), e.g. {"MNLI-m": "dev_matched_accuracy"}
    )
    score_range: tuple | None = None  # regression: the valid range of a score
    test_splits: tuple[
        str, ...
    ] = ()  # labelled test splits, scored once at the best dev epoch (test_* metrics)
    curve_metric: str = ""  # the metric of intrinsic-dimension curves (default: main_metric)
    predict: PredictSpec | None = None
    # Dev splits scored together as one more split (MNLI: dev_all = matched + mismatched, the "overall"
    # accuracy
    # RoBERTa-large tables report): name -> the splits whose predictions are pooled; never selects the epoch.
    pooled_splits: dict = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    description: str = ""
    source_file: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def title(self) -> str:
        """The task as tables and figures print it: its report columns' common name (RTE, MNLI, CoNLL03)."""
        labels = list(self.report_columns)
        if len(labels) != 1:  # MNLI-m, MNLI-mm -> MNLI
            prefix = os.path.commonprefix(labels)
            return prefix.rsplit("-", 1)[0] if "-" in prefix else prefix or self.name.upper()
        return labels[0]

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.hub.splits)

    @property
    def dev_splits(self) -> tuple[str, ...]:
        return tuple(s for s in self.splits if s.startswith("dev"))

    @property
    def is_pair(self) -> bool:
        return self.kind != TAGGING and len(self.hub.text) == 2

    @property
    def layout(self) -> str:
        return "words" if self.kind == TAGGING else ("pair" if self.is_pair else "single")

    @property
    def num_labels(self) -> int:
        return 1 if self.kind == REGRESSION else len(self.labels)

    @property
    def task_kind(self):
        return get_kind(self.kind)


def _tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (list, tuple)) else (x,)


def parse_task(entry: dict, where: str) -> Task:
    """A task entry (a YAML mapping) -> Task, or a one-line error naming the file and the bad field."""

    def need(d, key, ctx=""):
        if not isinstance(d, dict) or key not in d:
            raise BenchError(f"task file {where}: missing field {ctx}{key!r}")
        return d[key]

    try:
        kind = need(entry, "kind")
        if kind not in KINDS:
            raise choices_error(f"kind in task file {where}:", kind, KINDS)
        metrics = _tuple(need(entry, "metrics"))
        main = need(entry, "main_metric")
        if main not in metrics:
            raise BenchError(f"task file {where}: main_metric {main!r} is not among metrics {list(metrics)}")
        hub, local = need(entry, "hub"), need(entry, "local")
        hub_splits = dict(need(hub, "splits", "hub."))
        local_files = {s: _tuple(f) for s, f in dict(need(local, "files", "local.")).items()}
        if set(local_files) != set(hub_splits):
            raise BenchError(
                f"task file {where}: hub.splits {sorted(hub_splits)} and local.files "
                f"{sorted(local_files)} name different splits"
            )
        if "train" not in hub_splits or not any(s.startswith("dev") for s in hub_splits):
            raise BenchError(f"task file {where}: splits need train and at least one dev* split")
        fmt = local.get("format", "tsv")
        if fmt not in LOCAL_FORMATS:
            raise choices_error(f"local.format in task file {where}:", fmt, LOCAL_FORMATS)
        labels = tuple(str(x) for x in entry.get("labels") or ())
        if (kind == REGRESSION) != (not labels):
            raise BenchError(
                f"task file {where}: a {kind} task {'has no' if kind == REGRESSION else 'needs'} labels"
            )
        report = entry.get("report") or {}
        columns = dict(report.get("columns") or {need(entry, "name"): f"dev_{main}"})
        pred = entry.get("predict")
        predict = (
            None
            if not pred
            else PredictSpec(
                hub=dict(need(pred, "hub", "predict.")),
                files=dict(need(pred, "files", "predict.")),
                text=_tuple(need(pred, "text", "predict.")),
                index=str(pred.get("index", "index")),
                submission=dict(need(pred, "submission", "predict.")),
                optional=_tuple(pred.get("optional") or ()),
            )
        )
        if predict and not set(predict.files) == set(predict.hub) == set(predict.submission):
            raise BenchError(
                f"task file {where}: predict.hub, predict.files and predict.submission name different splits"
            )
        pooled = {str(k): _tuple(v) for k, v in (entry.get("pooled_splits") or {}).items()}
        for name, parts in pooled.items():
            if not set(parts) <= set(hub_splits) - {"train"} or len(parts) < 2:
                raise BenchError(f"task file {where}: pooled_splits.{name} must name two or more dev splits")
        return Task(
            predict=predict,
            pooled_splits=pooled,
            name=str(need(entry, "name")).lower(),
            kind=kind,
            labels=labels,
            metrics=metrics,
            main_metric=main,
            score=_tuple(entry.get("score") or main),
            hub=Source(
                text=_tuple(need(hub, "text", "hub.")),
                label=need(hub, "label", "hub."),
                splits=hub_splits,
                dataset=need(hub, "dataset", "hub."),
                config=hub.get("config"),
            ),
            local=Source(
                text=_tuple(local.get("text", ())),
                label=local.get("label"),
                splits=local_files,
                dir=str(need(local, "dir", "local.")),
                format=fmt,
                headerless=bool(local.get("headerless")),
            ),
            report_group=str(report.get("group", "")),
            report_order=int(report.get("order", 100)),
            score_range=tuple(float(x) for x in entry["score_range"]) if entry.get("score_range") else None,
            report_columns=columns,
            test_splits=_checked_test_splits(entry, hub_splits, where),
            curve_metric=str(entry.get("curve_metric") or main),
            aliases=tuple(str(a).lower() for a in entry.get("aliases") or ()),
            description=str(entry.get("description", "")),
            source_file=where,
        )
    except (TypeError, ValueError, AttributeError) as e:
        raise BenchError(f"task file {where}: malformed entry ({e})") from None


def _checked_test_splits(entry: dict, splits: dict, where: str) -> tuple[str, ...]:
    tests = tuple(entry.get("test_splits") or ())
    for s in tests:
        if s not in splits or s == "train" or s.startswith("dev"):
            raise BenchError(
                f"task file {where}: test_splits names {s!r}, which is not a test split of {sorted(splits)}"
            )
    return tests


def load_tasks() -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for task in load_registry(TASK_DIR, "tasks", "task", lambda entry, path: parse_task(entry, str(path))):
        if task.name in tasks:
            raise BenchError(
                f"task {task.name!r} is defined twice: {tasks[task.name].source_file} and {task.source_file}"
            )
        tasks[task.name] = task
    return dict(sorted(tasks.items(), key=lambda kv: (kv[1].report_order, kv[0])))


_TASKS: dict[str, Task] | None = None


def all_tasks() -> dict[str, Task]:
    """Every task, in report column order (read once per process)."""
    global _TASKS
    if _TASKS is None:
        _TASKS = load_tasks()
    return _TASKS


def get_task(name: str) -> Task:
    tasks = all_tasks()
    key = name.lower()
    for t in tasks.values():
        if key == t.name or key in t.aliases:
            return t
    raise choices_error("task", name, tasks)
