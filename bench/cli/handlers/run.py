"""What `bench run`, `bench eval`, `bench predict` and `bench ui` do once their command line is parsed
(the parsers: bench/cli/run.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from bench.checkpoint import checkpoint_dir
from bench.cli.common import split_list
from bench.cli.run import RUN_FLAGS
from bench.config import RunConfig, load_yaml, parse_set
from bench.errors import BenchError
from bench.presets import resolve
from bench.reload import evaluate_checkpoint, predict_checkpoint
from bench.resolve import build_config
from bench.runner import check_output_dir, run
from bench.submission import missing, write_wnli_majority
from bench.tracking import check_reachable, replay_unsent, resolve_uri
from methods import get_method


def config_layers(args) -> tuple[list[tuple[str, dict]], dict]:
    """(where it came from, option layer), lowest precedence first: preset < --config file < --set < flags;
    and the source of each preset value (method options as method.<key>)."""
    layers = [
        (f"config file {args.config}", load_yaml(args.config) if args.config else {}),
        ("--set", parse_set(args.overrides)),
        (
            "command line",
            {name: getattr(args, name) for name in RUN_FLAGS if getattr(args, name) is not None},
        ),
    ]
    preset, preset_sources = getattr(args, "preset", None), {}
    if preset:
        probe = build_config(
            *(layer for _, layer in layers)
        )  # which method, model and task the preset is for
        values, sources = resolve(preset, probe.method, probe.model, probe.task)
        layers.insert(
            0, (f"preset {preset}", {**values, "tags": {"preset": preset}})
        )  # the run says it used one
        preset_sources = {**sources, "tags": "the preset's name, as a run tag"}
    return layers, preset_sources


def config_from_args(args) -> RunConfig:
    return config_with_sources(args)[0]


def config_with_sources(args) -> tuple[RunConfig, list, dict]:
    layers, preset_sources = config_layers(args)
    return build_config(*(layer for _, layer in layers)), layers, preset_sources


def dry_run_yaml(cfg: RunConfig, layers: list, preset_sources: dict) -> str:
    """The resolved configuration as YAML, each value commented with where it came from."""

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
    cfg, layers, preset_sources = config_with_sources(args)
    if args.dry_run:
        print(dry_run_yaml(cfg, layers, preset_sources), end="")
        return 0
    run(cfg, progress=not args.no_progress)
    return 0


def cmd_eval(args) -> int:
    with checkpoint_dir(args.run, args.checkpoint, args.tracking_uri) as directory:
        evaluate_checkpoint(directory, args.data_dir)
    return 0


def cmd_predict(args) -> int:
    if args.wnli_majority:
        if not args.data_dir:
            raise BenchError("--wnli-majority needs --data-dir (the GLUE root or its WNLI directory)")
        write_wnli_majority(args.data_dir, check_output_dir(args.out_dir))
    if args.run or args.checkpoint or not args.wnli_majority:
        with checkpoint_dir(args.run, args.checkpoint, args.tracking_uri) as directory:
            predict_checkpoint(directory, split_list(args.split), args.out_dir, args.data_dir)
    todo = missing(Path(args.out_dir))
    print(
        f"{args.out_dir}: "
        + (
            f"still missing for a complete GLUE submission: {', '.join(todo)}"
            if todo
            else "a complete GLUE submission (zip the .tsv files for gluebenchmark.com)"
        )
    )
    return 0


def cmd_sync(args) -> int:
    uri = resolve_uri(args.tracking_uri)
    check_reachable(uri)
    for name in args.files:
        sent = replay_unsent(uri, Path(name))
        print(
            f"{name}: "
            + ", ".join(f"{n} metrics to run {run_id}" for run_id, n in sent.items())
            + "; removed"
        )
    return 0
