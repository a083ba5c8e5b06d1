"""`bench run`, `bench eval`, the listings (`tasks`, `methods`, `params`) and `bench ui`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.cli import split_list
from bench.config import FIELDS, RunConfig
from bench.errors import BenchError

# Flags that map one-to-one onto RunConfig fields; `--set key=value` reaches every other field.
RUN_FLAGS = ["method", "model", "task", "data_dir", "epochs", "max_steps", "lr", "batch_size", "max_length",
             "seed", "output_dir", "tracking_uri", "experiment", "precision", "patience", "max_train_samples"]
TYPES = {"epochs": float, "lr": float, "max_steps": int, "batch_size": int, "max_length": int, "seed": int,
         "patience": int, "max_train_samples": int}
HELP = {
    "method": "PEFT method (see `bench methods`)", "model": "alias, hub id or local model directory",
    "task": "task (see `bench tasks`)", "data_dir": "local GLUE/CoNLL directory instead of the hub",
    "epochs": "training epochs (may be fractional)", "max_steps": "train this many optimizer steps (overrides --epochs)",
    "lr": "peak learning rate", "batch_size": "training batch size", "max_length": "truncate inputs to this many tokens",
    "seed": "seed for data order, head and method init", "output_dir": "where adapter checkpoints are written",
    "tracking_uri": "MLflow tracking URI", "experiment": "MLflow experiment name",
    "precision": "auto | fp32 | bf16 | fp16", "patience": "epochs without improvement before stopping",
    "max_train_samples": "train on the first N examples only",
}


def _default_text(name: str) -> str:
    default = getattr(RunConfig(), name)
    notes = {"lr": "the method's default, see `bench methods`", "data_dir": "the Hugging Face hub",
             "tracking_uri": "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db", "experiment": "bench-<task>",
             "max_steps": "no cap", "patience": "no early stopping", "max_train_samples": "all"}
    return notes.get(name, repr(default)) if default is None or name in notes else repr(default)


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML file of options (same keys as --set)")
    p.add_argument("--preset", default=None, help="start from a paper preset (see `bench presets`), e.g. paper")
    for name in RUN_FLAGS:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=TYPES.get(name, str), default=None,
                       help=f"{HELP[name]} (default: {_default_text(name)})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any option, e.g. --set warmup_ratio=0.1 --set method.r=16 (repeatable; "
                        "all keys: " + ", ".join(FIELDS) + ")")


def config_layers(args) -> tuple[list[tuple[str, dict]], dict]:
    """(where it came from, option layer), lowest precedence first: preset < --config file < --set < flags;
    and the source of each preset value (method options as method.<key>)."""
    from bench.config import build_config, load_yaml, parse_set

    layers = [(f"config file {args.config}", load_yaml(args.config) if args.config else {}),
              ("--set", parse_set(args.overrides)),
              ("command line", {name: getattr(args, name) for name in RUN_FLAGS if getattr(args, name) is not None})]
    preset, preset_sources = getattr(args, "preset", None), {}
    if preset:
        from bench.presets import resolve

        probe = build_config(*(layer for _, layer in layers))  # which method, model and task the preset is for
        values, sources = resolve(preset, probe.method, probe.model, probe.task)
        layers.insert(0, (f"preset {preset}", {**values, "tags": {"preset": preset}}))  # the run says it used one
        preset_sources = {**sources, "tags": "the preset's name, as a run tag"}
    return layers, preset_sources


def config_from_args(args) -> RunConfig:
    return config_with_sources(args)[0]


def config_with_sources(args) -> tuple[RunConfig, list, dict]:
    from bench.config import build_config

    layers, preset_sources = config_layers(args)
    return build_config(*(layer for _, layer in layers)), layers, preset_sources


def dry_run_yaml(cfg: RunConfig, layers: list, preset_sources: dict) -> str:
    """The resolved configuration as YAML, each value commented with where it came from."""
    import yaml

    from methods import get_method

    def origin(key: str, method_option: bool = False) -> str:
        for where, layer in reversed(layers):
            scope = layer.get("method_options", {}) if method_option else layer
            if key in scope:
                if where.startswith("preset"):
                    return f"{where}: {preset_sources.get(('method.' if method_option else '') + key, '?')}"
                return where
        return "method default (its paper's)" if method_option else "bench default"

    def line(key, value, indent=""):
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("...\n").strip()
        return f"{indent}{key}: {text}"

    out = [f"# bench run --dry-run: {cfg.run_name()} (nothing loaded, no MLflow run created)"]
    for key, value in cfg.to_dict().items():
        if key == "method_options":
            continue
        where = origin(key)
        if key == "lr" and where == "bench default":
            where = "the method's default lr (`bench methods`)"
        out.append(f"{line(key, value):<48}  # {where}")
    out.append("method_options:")
    for key, value in get_method(cfg.method).make_config(cfg.method_options).__dict__.items():
        out.append(f"{line(key, value, '  '):<48}  # {origin(key, method_option=True)}")
    return "\n".join(out) + "\n"


def cmd_run(args) -> int:
    from bench.runner import run

    cfg, layers, preset_sources = config_with_sources(args)
    if args.dry_run:
        print(dry_run_yaml(cfg, layers, preset_sources), end="")
        return 0
    run(cfg, progress=not args.no_progress)
    return 0


def cmd_presets(args) -> int:
    from bench.presets import load_entries

    print(f"{'method':<10}{'preset':<8}{'scope':<58}values  (source)")
    for e in load_entries():
        values = ", ".join(f"{k}={v}" for k, v in e.values.items())
        print(f"{e.method:<10}{e.preset:<8}{e.scope():<58}{values}  ({e.source})")
    print("\nuse: bench run --preset paper --method M --model X --task T [--dry-run]; later entries and your "
          "--config/--set/flags override")
    return 0


def cmd_eval(args) -> int:
    from bench.runner import checkpoint_dir, evaluate_checkpoint

    with checkpoint_dir(args.run, args.checkpoint, args.tracking_uri) as directory:
        evaluate_checkpoint(directory, args.data_dir)
    return 0


def cmd_predict(args) -> int:
    from bench.runner import check_output_dir, checkpoint_dir, predict_checkpoint
    from bench.submission import missing, write_wnli_majority

    if args.wnli_majority:
        if not args.data_dir:
            raise BenchError("--wnli-majority needs --data-dir (the GLUE root or its WNLI directory)")
        write_wnli_majority(args.data_dir, check_output_dir(args.out_dir))
    if args.run or args.checkpoint or not args.wnli_majority:
        with checkpoint_dir(args.run, args.checkpoint, args.tracking_uri) as directory:
            predict_checkpoint(directory, split_list(args.split), args.out_dir, args.data_dir)
    todo = missing(Path(args.out_dir))
    print(f"{args.out_dir}: " + (f"still missing for a complete GLUE submission: {', '.join(todo)}" if todo else
                                 "a complete GLUE submission (zip the .tsv files for gluebenchmark.com)"))
    return 0


def cmd_tasks(args) -> int:
    from bench.tasks import all_tasks

    print(f"{'task':<11}{'kind':<16}{'input':<7}{'labels':<8}{'main metric':<13}{'dev splits':<28}metrics")
    for t in all_tasks().values():
        print(f"{t.name:<11}{t.kind:<16}{t.layout:<7}{t.num_labels:<8}{t.main_metric:<13}"
              f"{', '.join(t.dev_splits):<28}{', '.join(t.metrics)}")
    print("\nbest epoch = highest main metric on the first dev split (earliest epoch wins ties); "
          "glue_score = mean of F1+accuracy (MRPC, QQP) or Pearson+Spearman (STS-B), else the main metric")
    return 0


def cmd_methods(args) -> int:
    from methods import REGISTRY

    for m in REGISTRY.values():
        opts = ", ".join(f"{k}={v!r}" for k, v in m.defaults().items()) or "-"
        knob = f"{m.knob} ({m.knob_label})" if m.knob and m.knob_label else (m.knob or "-")
        print(f"{m.name:<9} {m.summary}")
        print(f"{'':<9} default lr {m.default_lr:g}; size knob: {knob}; options: {opts}")
    print("\nset options with --set method.<option>=<value> or a `method_options:` mapping in --config")
    return 0


def cmd_params(args) -> int:
    from bench.param_table import method_rows, published_rows
    from bench.tasks import get_task
    from methods import REGISTRY, get_method
    from reports.params import render_method_rows, render_published
    from reports.render import standalone_latex

    def out(text):
        print(standalone_latex(text) if args.format == "latex" and args.standalone else text, end="")

    if args.published:
        out(render_published(published_rows(), args.format))
        return 0
    task = get_task(args.task)
    names = args.methods.split(",") if args.methods else list(REGISTRY)
    for name in names:
        get_method(name)
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    out(render_method_rows(method_rows(models, task, names, args.head, explicit=bool(args.methods)), task,
                           args.format))
    return 0


def add_params_options(q, fmt_default: str) -> None:
    q.add_argument("--model", default="bert-large-cased",
                   help="one or more comma-separated models: shipped architectures (bert-base-cased, ..., "
                        "roberta-large), minilm or a local dir (default: bert-large-cased)")
    q.add_argument("--task", default="rte", help="fixes the input layout and the head (default: rte)")
    q.add_argument("--methods", default=None, help="comma-separated (default: all)")
    q.add_argument("--format", default=fmt_default, choices=["text", "md", "latex", "csv", "json"],
                   help=f"output format (default: {fmt_default})")
    q.add_argument("--standalone", action="store_true", help="LaTeX: a complete document for pdflatex")
    q.add_argument("--published", action="store_true",
                   help="the published %%Param figures of docs/methods.md beside ours, with the configuration of each")
    q.add_argument("--head", default="family", choices=["family", "linear"],
                   help="the task head counted in the head column (default: family)")


def cmd_ui(args) -> int:
    """The MLflow server in its own process group, so that stopping bench (Ctrl-C, SIGTERM) stops all of it:
    the server and the workers it forks, and the port is free again."""
    import subprocess

    from bench.redact import redact
    from bench.tracking import check_reachable, resolve_uri

    if not 1 <= args.port <= 65535:
        raise BenchError(f"--port {args.port} must be between 1 and 65535")
    uri = resolve_uri(args.tracking_uri)
    check_reachable(uri)
    print(f"MLflow UI on http://127.0.0.1:{args.port} for {redact(uri)}", flush=True)
    proc = subprocess.Popen([sys.executable, "-P", "-m", "mlflow", "ui", "--backend-store-uri", uri,
                             "--host", "127.0.0.1", "--port", str(args.port)], start_new_session=True)
    try:
        return proc.wait()
    finally:
        stop_group(proc)


def stop_group(proc) -> None:
    """SIGTERM the whole process group (the server and the workers it forked), wait up to 10 s for every
    member to go, then SIGKILL what is left: the port is free when bench returns."""
    import os
    import signal
    import time

    def group_alive() -> bool:
        try:
            os.killpg(proc.pid, 0)
            return True
        except ProcessLookupError:
            return False

    if group_alive():
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while group_alive() and time.monotonic() < deadline:
        proc.poll()  # reap our direct child so it does not linger as a zombie
        time.sleep(0.1)
    if group_alive():
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def add_parsers(sub) -> None:
    p = sub.add_parser("run", help="train and evaluate one configuration",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train and evaluate one (method, model, task) configuration; log it to MLflow.")
    add_run_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved configuration (with each value's source) and exit: no weights, no run")
    p.set_defaults(func=cmd_run)

    sub.add_parser("presets", help="list paper presets: scope, values and the source of each").set_defaults(
        func=cmd_presets)

    p = sub.add_parser("eval", help="reload an adapter checkpoint and evaluate it on the dev splits")
    p.add_argument("--run", help="MLflow run id whose adapter artifact to evaluate")
    p.add_argument("--checkpoint", metavar="DIR", help="a local adapter directory")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--data-dir", default=None, help="override the data directory recorded in the run")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="write GLUE test-server prediction files from an adapter checkpoint")
    p.add_argument("--run", help="MLflow run id whose adapter artifact to use")
    p.add_argument("--checkpoint", metavar="DIR", help="a local adapter directory")
    p.add_argument("--split", default=None, help="comma-separated unlabelled splits (default: all of the task's, "
                                                 "e.g. test; MNLI: test_matched,test_mismatched)")
    p.add_argument("--out-dir", default="predictions", help="where the TSV files go (default: predictions)")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--data-dir", default=None, help="override the data directory recorded in the run")
    p.add_argument("--wnli-majority", action="store_true",
                   help="also write WNLI.tsv: the training majority for every test pair, as GLUE's baselines "
                        "(needs --data-dir; --run/--checkpoint then optional)")
    p.set_defaults(func=cmd_predict)

    sub.add_parser("tasks", help="list tasks").set_defaults(func=cmd_tasks)
    sub.add_parser("methods", help="list methods, their knobs and defaults").set_defaults(func=cmd_methods)

    p = sub.add_parser("params", help="parameter counts of every method on an architecture (no weights needed)")
    add_params_options(p, "text")
    p.set_defaults(func=cmd_params)


def add_ui_parser(sub) -> None:
    p = sub.add_parser("ui", help="serve the MLflow UI on 127.0.0.1")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_ui)
