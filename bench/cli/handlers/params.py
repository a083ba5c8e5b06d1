"""`bench methods`, `bench params` and `bench presets`: the methods, their options, parameter counts and
paper presets."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.capabilities import INTRO, matrix, render
from bench.cli.common import split_list, write_atomically
from bench.errors import BenchError, choices_error
from bench.families import families
from bench.param_table import method_rows, published_rows
from bench.presets import load_entries
from bench.tasks import get_task
from methods import REGISTRY, get_method
from reports.params import render_method_rows, render_published
from reports.render import standalone_latex


def cmd_methods(args) -> int:
    if args.matrix:
        return capability_matrix(args)
    if args.methods or args.families or args.write:
        raise BenchError("--methods, --families and --write go with --matrix")
    first_tuner = next((m for m in REGISTRY.values() if m.peft_tuner), None)
    for m in REGISTRY.values():
        if m is first_tuner:
            print("\npeft tuners (methods/tuners/tuners.yaml; the head is trained and counted once):\n")
        opts = ", ".join(f"{k}={v!r}" for k, v in m.defaults().items()) or "-"
        knob = f"{m.knob} ({m.knob_label})" if m.knob and m.knob_label else (m.knob or "-")
        print(f"{m.name:<11} {m.summary}")
        print(f"{'':<11} default lr {m.default_lr:g}; size knob: {knob}; options: {opts}")
    print("\nset options with --set method.<option>=<value> or a `method_options:` mapping in --config")
    return 0


def capability_matrix(args) -> int:
    methods = split_list(args.methods) or list(REGISTRY)
    for name in methods:
        get_method(name)
    names = split_list(args.families) or list(families())
    for name in names:
        if name not in families():
            raise choices_error("family", name, families())
    text = render(matrix(methods, names), versions())
    if args.write:
        write_atomically(Path(args.write), INTRO + text)
        print(f"wrote {args.write}")
    else:
        print(text, end="")
    return 0


def versions() -> str:
    import peft  # lazy: seconds to import; the tuners' probes have loaded it already
    import transformers  # lazy: as peft

    return (
        f"Probed with peft {peft.__version__}, transformers {transformers.__version__}, "
        f"torch {torch.__version__}."
    )


def cmd_params(args) -> int:
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
    out(
        render_method_rows(
            method_rows(models, task, names, args.head, explicit=bool(args.methods)), task, args.format
        )
    )
    return 0


def cmd_presets(args) -> int:
    print(f"{'method':<10}{'preset':<8}{'scope':<58}values  (source)")
    for e in load_entries():
        values = ", ".join(f"{k}={v}" for k, v in e.values.items())
        print(f"{e.method:<10}{e.preset:<8}{e.scope():<58}{values}  ({e.source})")
    print(
        "\nuse: bench run --preset paper --method M --model X --task T [--dry-run]; later entries and your "
        "--config/--set/flags override"
    )
    return 0
