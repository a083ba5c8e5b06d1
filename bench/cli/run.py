"""`bench run`, `bench eval`, the listings (`tasks`, `methods`, `params`) and `bench ui`."""

from __future__ import annotations

import argparse

from bench.config import FIELDS, RunConfig

# Flags that map one-to-one onto RunConfig fields; `--set key=value` reaches every other field.
RUN_FLAGS = [
    "method",
    "model",
    "task",
    "data_dir",
    "epochs",
    "max_steps",
    "lr",
    "batch_size",
    "max_length",
    "seed",
    "output_dir",
    "tracking_uri",
    "experiment",
    "precision",
    "patience",
    "max_train_samples",
]
TYPES = {
    "epochs": float,
    "lr": float,
    "max_steps": int,
    "batch_size": int,
    "max_length": int,
    "seed": int,
    "patience": int,
    "max_train_samples": int,
}
HELP = {
    "method": "PEFT method (see `bench methods`)",
    "model": "alias, hub id or local model directory",
    "task": "task (see `bench tasks`)",
    "data_dir": "local GLUE/CoNLL directory instead of the hub",
    "epochs": "training epochs (may be fractional)",
    "max_steps": "train this many optimizer steps (overrides --epochs)",
    "lr": "peak learning rate",
    "batch_size": "training batch size",
    "max_length": "truncate inputs to this many tokens",
    "seed": "seed for data order, head and method init",
    "output_dir": "where adapter checkpoints are written",
    "tracking_uri": "MLflow tracking URI",
    "experiment": "MLflow experiment name",
    "precision": "auto | fp32 | bf16 | fp16",
    "patience": "epochs without improvement before stopping",
    "max_train_samples": "train on the first N examples only",
}


def _default_text(name: str) -> str:
    default = getattr(RunConfig(), name)
    notes = {
        "lr": "the method's default, see `bench methods`",
        "data_dir": "the Hugging Face hub",
        "tracking_uri": "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db",
        "experiment": "bench-<task>",
        "max_steps": "no cap",
        "patience": "no early stopping",
        "max_train_samples": "all",
    }
    return notes.get(name, repr(default)) if default is None or name in notes else repr(default)


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML file of options (same keys as --set)")
    p.add_argument(
        "--preset", default=None, help="start from a paper preset (see `bench presets`), e.g. paper"
    )
    for name in RUN_FLAGS:
        p.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=TYPES.get(name, str),
            default=None,
            help=f"{HELP[name]} (default: {_default_text(name)})",
        )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any option, e.g. --set warmup_ratio=0.1 --set method.r=16 (repeatable; "
        "all keys: " + ", ".join(FIELDS) + ")",
    )


def add_params_options(q, fmt_default: str) -> None:
    q.add_argument(
        "--model",
        default="bert-large-cased",
        help="one or more comma-separated models: shipped architectures (bert-base-cased, ..., "
        "roberta-large), minilm or a local dir (default: bert-large-cased)",
    )
    q.add_argument("--task", default="rte", help="fixes the input layout and the head (default: rte)")
    q.add_argument("--methods", default=None, help="comma-separated (default: all)")
    q.add_argument(
        "--format",
        default=fmt_default,
        choices=["text", "md", "latex", "csv", "json"],
        help=f"output format (default: {fmt_default})",
    )
    q.add_argument("--standalone", action="store_true", help="LaTeX: a complete document for pdflatex")
    q.add_argument(
        "--published",
        action="store_true",
        help="the published %%Param figures of docs/methods.md beside ours, with the configuration of each",
    )
    q.add_argument(
        "--head",
        default="family",
        choices=["family", "linear"],
        help="the task head counted in the head column (default: family)",
    )


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "run",
        help="train and evaluate one configuration",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train and evaluate one (method, model, task) configuration; log it to MLflow.",
    )
    add_run_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved configuration (with each value's source) and exit: no weights, no run",
    )
    p.set_defaults(func="run:cmd_run")

    sub.add_parser("presets", help="list paper presets: scope, values and the source of each").set_defaults(
        func="params:cmd_presets"
    )

    p = sub.add_parser("eval", help="reload an adapter checkpoint and evaluate it on the dev splits")
    p.add_argument("--run", help="MLflow run id whose adapter artifact to evaluate")
    p.add_argument("--checkpoint", metavar="DIR", help="a local adapter directory")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--data-dir", default=None, help="override the data directory recorded in the run")
    p.set_defaults(func="run:cmd_eval")

    p = sub.add_parser("predict", help="write GLUE test-server prediction files from an adapter checkpoint")
    p.add_argument("--run", help="MLflow run id whose adapter artifact to use")
    p.add_argument("--checkpoint", metavar="DIR", help="a local adapter directory")
    p.add_argument(
        "--split",
        default=None,
        help="comma-separated unlabelled splits (default: all of the task's, "
        "e.g. test; MNLI: test_matched,test_mismatched)",
    )
    p.add_argument("--out-dir", default="predictions", help="where the TSV files go (default: predictions)")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--data-dir", default=None, help="override the data directory recorded in the run")
    p.add_argument(
        "--wnli-majority",
        action="store_true",
        help="also write WNLI.tsv: the training majority for every test pair, as GLUE's baselines "
        "(needs --data-dir; --run/--checkpoint then optional)",
    )
    p.set_defaults(func="run:cmd_predict")

    p = sub.add_parser(
        "sync", help="send metrics a run kept locally while the tracking store was away (its spill files)"
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="unsent-metrics/<run id>.jsonl files")
    p.add_argument("--tracking-uri", default=None)
    p.set_defaults(func="run:cmd_sync")

    sub.add_parser("tasks", help="list tasks").set_defaults(func="listings:cmd_tasks")
    p = sub.add_parser("methods", help="list methods, their knobs and defaults")
    p.add_argument(
        "--matrix",
        action="store_true",
        help="probe every method on a tiny model of every family and task kind: works / refused (why)",
    )
    p.add_argument("--methods", default=None, help="with --matrix: comma-separated (default: all)")
    p.add_argument("--families", default=None, help="with --matrix: comma-separated (default: all)")
    p.add_argument("--write", default=None, metavar="FILE", help="with --matrix: write the Markdown to FILE")
    p.set_defaults(func="params:cmd_methods")

    p = sub.add_parser(
        "params", help="parameter counts of every method on an architecture (no weights needed)"
    )
    add_params_options(p, "text")
    p.set_defaults(func="params:cmd_params")


def add_ui_parser(sub) -> None:
    p = sub.add_parser("ui", help="serve the MLflow UI (and, with --sweeps, optuna-dashboard) on 127.0.0.1")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--port", type=int, default=5000)
    p.add_argument(
        "--sweeps",
        action="store_true",
        help="also serve optuna-dashboard on the sweep storage (trials, parameter importances, history)",
    )
    p.add_argument(
        "--storage", default=None, help="sweep storage URL for --sweeps (default: <output-dir>/sweeps.db)"
    )
    p.add_argument("--output-dir", default="runs", help="where the default sweep storage is (default: runs)")
    p.add_argument("--sweeps-port", type=int, default=8080, help="port of optuna-dashboard (default: 8080)")
    p.set_defaults(func="ui:cmd_ui")
