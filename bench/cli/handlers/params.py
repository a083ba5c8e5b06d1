"""`bench methods`, `bench params` and `bench presets`: the methods, their options, parameter counts and
paper presets."""

from __future__ import annotations

from bench.param_table import method_rows, published_rows
from bench.presets import load_entries
from bench.tasks import get_task
from methods import REGISTRY, get_method
from reports.params import render_method_rows, render_published
from reports.render import standalone_latex


def cmd_methods(args) -> int:
    for m in REGISTRY.values():
        opts = ", ".join(f"{k}={v!r}" for k, v in m.defaults().items()) or "-"
        knob = f"{m.knob} ({m.knob_label})" if m.knob and m.knob_label else (m.knob or "-")
        print(f"{m.name:<9} {m.summary}")
        print(f"{'':<9} default lr {m.default_lr:g}; size knob: {knob}; options: {opts}")
    print("\nset options with --set method.<option>=<value> or a `method_options:` mapping in --config")
    return 0


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
