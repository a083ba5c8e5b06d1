"""The `bench` command. Heavy imports (torch, transformers, mlflow) happen inside the handlers so
that `bench --help` and the listing commands answer at once."""

from __future__ import annotations

import argparse
import signal
import sys

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
    default = RunConfig().__getattribute__(name)
    notes = {"lr": "the method's default, see `bench methods`", "data_dir": "the Hugging Face hub",
             "tracking_uri": "$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db", "experiment": "bench-<task>",
             "max_steps": "no cap", "patience": "no early stopping", "max_train_samples": "all"}
    return notes.get(name, repr(default)) if default is None or name in notes else repr(default)


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML file of options (same keys as --set)")
    for name in RUN_FLAGS:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=TYPES.get(name, str), default=None,
                       help=f"{HELP[name]} (default: {_default_text(name)})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any option, e.g. --set warmup_ratio=0.1 --set method.r=16 (repeatable; "
                        "all keys: " + ", ".join(FIELDS) + ")")


def config_from_args(args) -> RunConfig:
    from bench.config import build_config, load_yaml, parse_set

    file_layer = load_yaml(args.config) if args.config else {}
    flags = {name: getattr(args, name) for name in RUN_FLAGS if getattr(args, name) is not None}
    return build_config(file_layer, parse_set(args.overrides), flags)


def cmd_run(args) -> int:
    from bench.runner import run

    run(config_from_args(args), progress=not args.no_progress)
    return 0


def cmd_eval(args) -> int:
    from pathlib import Path

    from bench.runner import download_run_checkpoint, evaluate_checkpoint

    if bool(args.run) == bool(args.checkpoint):
        raise BenchError("bench eval needs exactly one of --run RUN_ID or --checkpoint DIR")
    directory = download_run_checkpoint(args.run, args.tracking_uri) if args.run else Path(args.checkpoint)
    evaluate_checkpoint(directory, args.data_dir)
    return 0


def cmd_tasks(args) -> int:
    from bench.tasks import TASKS

    print(f"{'task':<11}{'kind':<16}{'input':<7}{'labels':<8}{'main metric':<13}{'dev splits':<28}metrics")
    for t in TASKS.values():
        layout = "pair" if t.is_pair else ("words" if t.kind == "tagging" else "single")
        print(f"{t.name:<11}{t.kind:<16}{layout:<7}{t.num_labels:<8}{t.main_metric:<13}"
              f"{', '.join(t.dev_splits):<28}{', '.join(t.metrics)}")
    print("\nbest epoch = highest main metric on the first dev split (earliest epoch wins ties); "
          "glue_score = mean of F1+accuracy (MRPC, QQP) or Pearson+Spearman (STS-B), else the main metric")
    return 0


def cmd_methods(args) -> int:
    from methods import REGISTRY

    for m in REGISTRY.values():
        opts = ", ".join(f"{k}={v!r}" for k, v in m.defaults().items()) or "-"
        print(f"{m.name:<9} {m.summary}")
        print(f"{'':<9} default lr {m.default_lr:g}; size knob: {m.knob or '-'}; options: {opts}")
    print("\nset options with --set method.<option>=<value> or a `method_options:` mapping in --config")
    return 0


def cmd_params(args) -> int:
    from bench.param_table import method_rows, published_rows, render_method_rows, render_published
    from bench.tasks import get_task
    from methods import REGISTRY, get_method

    if args.published:
        print(render_published(published_rows(), args.format), end="")
        return 0
    task = get_task(args.task)
    names = args.methods.split(",") if args.methods else list(REGISTRY)
    for name in names:
        get_method(name)
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    print(render_method_rows(method_rows(models, task, names), task, args.format), end="")
    return 0


def _sweep_base(args) -> dict:
    """Options fixed for every trial (--set, --data-dir, ...); they leave the search space."""
    from bench.config import parse_set

    base = parse_set(args.overrides)
    for name in ("data_dir", "output_dir", "tracking_uri", "experiment"):
        if getattr(args, name, None) is not None:
            base[name] = getattr(args, name)
    return base


def cmd_sweep(args) -> int:
    from sweeps import driver

    out = getattr(args, "output_dir", None) or "runs"
    if args.sweep_command in ("create", "run"):
        name = driver.create(args.method, args.model, args.task, _sweep_base(args), args.space, args.storage,
                             args.trials, args.seeds_final, args.search_seed, args.pruner, args.name)
        if args.sweep_command == "run":
            driver.work(name, args.storage, None, args.heartbeat, out, args.force)
            print(driver.status(name, args.storage, out))
            driver.finalize(name, args.storage, args.seeds_final, out, args.force)
        else:
            print(f"start workers with: bench sweep work {name}"
                  + (" --storage <URL>" if args.storage else f" --output-dir {out}"))
    elif args.sweep_command == "work":
        ran = driver.work(args.study, args.storage, args.n_trials, args.heartbeat, out, args.force)
        print(f"this worker ran {ran} trials")
        print(driver.status(args.study, args.storage, out))
    elif args.sweep_command == "status":
        print(driver.status(args.study, args.storage, out))
    elif args.sweep_command == "finalize":
        driver.finalize(args.study, args.storage, args.seeds, out, args.force)
    elif args.sweep_command == "ls":
        print(driver.list_studies(args.storage, out))
    return 0


def add_sweep_parsers(sub) -> None:
    p = sub.add_parser("sweep", help="Optuna sweeps: create, work, status, finalize, ls, run")
    ss = p.add_subparsers(dest="sweep_command", required=True)

    def storage_opts(q):
        q.add_argument("--storage", default=None, help="Optuna storage URL, e.g. postgresql://host/db for many "
                       "machines (default: sqlite:///<output-dir>/sweeps.db)")
        q.add_argument("--output-dir", default=None, help="where runs and the default storage live (default: runs)")

    for cmd in ("create", "run"):
        q = ss.add_parser(cmd, help="create a study" if cmd == "create" else "create + work + finalize here")
        q.add_argument("--method", required=True)
        q.add_argument("--model", default="minilm")
        q.add_argument("--task", required=True)
        q.add_argument("--space", default=None, help="search-space YAML (default: sweeps/spaces/<method>.yaml)")
        q.add_argument("--trials", type=int, default=20, help="COMPLETE trials in the budget (default: 20)")
        q.add_argument("--seeds-final", type=int, default=3, help="seeds for finalize (default: 3)")
        q.add_argument("--search-seed", type=int, default=1, help="the seed of every search trial (default: 1)")
        q.add_argument("--pruner", default="median", help="median | halving | none (default: median)")
        q.add_argument("--name", default=None, help="study name (default: method-model-task-<space hash>)")
        q.add_argument("--data-dir", default=None)
        q.add_argument("--tracking-uri", default=None)
        q.add_argument("--experiment", default=None)
        q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="fix an option for every trial (it leaves the search space), e.g. --set epochs=2")
        storage_opts(q)
        if cmd == "run":
            q.add_argument("--heartbeat", type=int, default=10)
            q.add_argument("--force", action="store_true", help="rerun configurations that already finished")
    q = ss.add_parser("work", help="run trials of a study until its budget is complete")
    q.add_argument("study")
    q.add_argument("--n-trials", type=int, default=None, help="stop after this many trials (default: until done)")
    q.add_argument("--heartbeat", type=int, default=10, help="seconds; a trial 3 beats late is retried (default: 10)")
    q.add_argument("--force", action="store_true", help="rerun configurations that already finished")
    storage_opts(q)
    q = ss.add_parser("status", help="trials, states, best so far, budget used")
    q.add_argument("study")
    storage_opts(q)
    q = ss.add_parser("finalize", help="re-run the best configuration on K seeds (only these feed tables)")
    q.add_argument("study")
    q.add_argument("--seeds", type=int, default=None, help="K (default: the study's --seeds-final)")
    q.add_argument("--force", action="store_true", help="rerun seeds that already finished")
    storage_opts(q)
    q = ss.add_parser("ls", help="list studies in a storage")
    storage_opts(q)
    p.set_defaults(func=cmd_sweep)


def parse_lr_grid(text: str | None) -> dict[str, list[float]]:
    """'pasta=1e-3,3e-3;full=2e-5' -> {'pasta': [0.001, 0.003], 'full': [2e-05]}."""
    grid: dict[str, list[float]] = {}
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        method, sep, values = part.partition("=")
        try:
            grid[method.strip()] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            sep = ""
        if not sep or not grid.get(method.strip()):
            raise BenchError(f"malformed --lr-grid part {part!r}: expected method=lr1,lr2 (e.g. pasta=1e-3,3e-3)")
    return grid


def cmd_intrinsic(args) -> int:
    from sweeps.intrinsic import run_intrinsic

    base = _sweep_base(args)
    run_intrinsic(args.model, args.task, _split(args.methods), args.seeds, args.points, base,
                  parse_lr_grid(args.lr_grid), args.workers)
    return 0


def report_intrinsic(args) -> int:
    from pathlib import Path

    from bench.tasks import get_task
    from reports.intrinsic import analyse, d90_table, plot, points_table
    from reports.runs import load_runs

    task = get_task(args.task)
    name = f"intrinsic-{args.model.rstrip('/').split('/')[-1]}-{task.name}"
    df = load_runs(args.tracking_uri, phase="intrinsic")
    df = df[df.get("tags.intrinsic") == name] if "tags.intrinsic" in df else df.iloc[0:0]
    if df.empty:
        raise BenchError(f"no finished runs of {name}: run `bench intrinsic --model {args.model} --task {task.name}`")
    a = analyse(df, task.name, args.metric)
    seeds = sorted(df["tags.seed"].unique())
    n_train = str(df["params.max_train_samples"].iloc[0])
    n_train = "all" if n_train in ("None", "nan") else f"the first {n_train}"
    budget = (f"Budget: {len(seeds)} seeds per point, {df['params.epochs'].iloc[0]} epochs on {n_train} "
              f"training examples, {len(df)} runs.")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = plot(a, str(out / name), f"{args.model} on {task.name}: {a['metric']} vs trainable parameters. {budget}")
    (out / f"{name}-d90.md").write_text(d90_table(a, "md", budget) + "\n" + points_table(a, "md"))
    (out / f"{name}-d90.tex").write_text(d90_table(a, "latex", budget))
    print(d90_table(a, args.format, budget))
    print(points_table(a, args.format))
    print("wrote " + ", ".join(files + [str(out / f"{name}-d90.md"), str(out / f"{name}-d90.tex")]))
    return 0


def cmd_report(args) -> int:
    from reports.render import standalone_latex

    if args.report_command == "params":
        return cmd_params(args)
    if args.report_command == "intrinsic":
        return report_intrinsic(args)
    from reports.runs import aggregate, load_runs, sweep_budgets
    from reports.tables import build, render_results

    df = load_runs(args.tracking_uri, phase=None if args.all_runs else "final")
    t = build(aggregate(df), args.model, _split(args.tasks), _split(args.methods))
    studies = {s for x in t["sel"]["studies"] for s in x.split(",") if s}
    budgets = sweep_budgets(load_runs(args.tracking_uri, phase=None), studies) if studies else {}
    budget = (f"Sweep budget: {', '.join(sorted(set(budgets.values())))} trials per method." if budgets
              else "Runs not from sweeps (no search budget).")
    out = render_results(t, args.format, args.published, budget)
    print(standalone_latex(out) if args.format == "latex" and args.standalone else out, end="")
    return 0


def _split(text):
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def cmd_perf(args) -> int:
    from pathlib import Path

    from bench.perf import compare

    cfg = config_from_args(args)
    if args.steps < 2 or args.repeats < 1:
        raise BenchError(f"--steps {args.steps} must be at least 2 (the first step is timed apart as setup) and "
                         f"--repeats {args.repeats} at least 1")
    methods = [] if args.methods == "none" else _split(args.methods) or []
    text = compare(cfg, args.steps, args.repeats, methods, echo=lambda m: print(m, file=sys.stderr))
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as f:
            f.write(text + "\n\n")
    return 0


def cmd_ui(args) -> int:
    import subprocess

    from bench.tracking import resolve_uri

    uri = resolve_uri(args.tracking_uri)
    print(f"MLflow UI on http://127.0.0.1:{args.port} for {uri}")
    return subprocess.call([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                            "--host", "127.0.0.1", "--port", str(args.port)])


def build_parser() -> argparse.ArgumentParser:
    from bench import __version__

    parser = argparse.ArgumentParser(prog="bench", description="PEFT benchmark harness tracked in MLflow")
    parser.add_argument("--version", action="version", version=f"bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="train and evaluate one configuration",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train and evaluate one (method, model, task) configuration; log it to MLflow.")
    add_run_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("eval", help="reload an adapter checkpoint and evaluate it on the dev splits")
    p.add_argument("--run", help="MLflow run id whose adapter artifact to evaluate")
    p.add_argument("--checkpoint", metavar="DIR", help="a local adapter directory")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--data-dir", default=None, help="override the data directory recorded in the run")
    p.set_defaults(func=cmd_eval)

    sub.add_parser("tasks", help="list tasks").set_defaults(func=cmd_tasks)
    sub.add_parser("methods", help="list methods, their knobs and defaults").set_defaults(func=cmd_methods)

    p = sub.add_parser("params", help="parameter counts of every method on an architecture (no weights needed)")
    p.add_argument("--model", default="bert-large-cased",
                   help="one or more comma-separated models: shipped architectures (bert-base-cased, ..., "
                        "roberta-large), minilm or a local dir (default: bert-large-cased)")
    p.add_argument("--task", default="rte", help="fixes the input layout and the head (default: rte)")
    p.add_argument("--methods", default=None, help="comma-separated (default: all)")
    p.add_argument("--format", default="text", choices=["text", "md", "latex", "csv"])
    p.add_argument("--published", action="store_true",
                   help="the published %%Param figures of METHODS.md beside ours, with the configuration of each")
    p.set_defaults(func=cmd_params)

    add_sweep_parsers(sub)

    p = sub.add_parser("report", help="tables from tracked runs: results (paper layout) and parameter counts")
    rs = p.add_subparsers(dest="report_command", required=True)
    q = rs.add_parser("table", help="methods x tasks, mean ± std over seeds, best in bold")
    q.add_argument("--model", required=True, help="the model tag of the runs (as given to bench run)")
    q.add_argument("--tasks", default=None, help="comma-separated (default: all with runs)")
    q.add_argument("--methods", default=None, help="comma-separated (default: all with runs)")
    q.add_argument("--format", default="md", choices=["text", "md", "latex", "csv"])
    q.add_argument("--published", action="store_true", help="add METHODS.md's published rows, marked as such")
    q.add_argument("--all-runs", action="store_true", help="use every FINISHED run, not only sweeps' final seeds")
    q.add_argument("--standalone", action="store_true", help="LaTeX: a complete document for pdflatex")
    q.add_argument("--tracking-uri", default=None)
    q = rs.add_parser("intrinsic", help="d90 per method, curves (PNG + PDF) and tables from `bench intrinsic` runs")
    q.add_argument("--model", required=True)
    q.add_argument("--task", required=True)
    q.add_argument("--metric", default=None, help="e.g. dev_accuracy (default: the task's main metric; MRPC: "
                                                   "accuracy)")
    q.add_argument("--format", default="md", choices=["text", "md", "latex", "csv"])
    q.add_argument("--out-dir", default="docs", help="where the plot and tables are written (default: docs)")
    q.add_argument("--tracking-uri", default=None)
    q = rs.add_parser("params", help="parameter-count table (same as `bench params`)")
    q.add_argument("--model", default="bert-large-cased")
    q.add_argument("--task", default="rte")
    q.add_argument("--methods", default=None)
    q.add_argument("--format", default="latex", choices=["text", "md", "latex", "csv"])
    q.add_argument("--published", action="store_true")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("intrinsic", help="intrinsic-dimension curves: each method's size knob on a log grid")
    p.add_argument("--model", default="minilm")
    p.add_argument("--task", required=True)
    p.add_argument("--methods", default="pasta,lora,bitfit,adapter,ptuning",
                   help="comma-separated; full FT and head-only anchors are always added")
    p.add_argument("--seeds", type=int, default=3, help="seeds per point, the same for every method (default: 3)")
    p.add_argument("--points", type=int, default=5, help="knob values per method (default: 5)")
    p.add_argument("--workers", type=int, default=1,
                   help="point runs at a time, each in its own process (default: 1); several small-model "
                        "runs share one GPU")
    p.add_argument("--lr-grid", default=None, help="per-method learning rates, e.g. 'pasta=1e-3,3e-3;full=2e-5' "
                                                   "(default: each method's default lr); best mean per point wins")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--experiment", default=None)
    p.add_argument("--output-dir", default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="options for every run, e.g. --set epochs=2 --set max_train_samples=2000")
    p.set_defaults(func=cmd_intrinsic)

    p = sub.add_parser("perf", help="side-by-side speed benchmark: bench's loop vs the HF Trainer")
    add_run_options(p)
    p.add_argument("--steps", type=int, default=40, help="optimizer steps per variant (default: 40)")
    p.add_argument("--repeats", type=int, default=3, help="alternated repetitions (default: 3)")
    p.add_argument("--methods", default="pasta,adapter,bitfit,lora,ptuning",
                   help="methods timed against full FT on the same batches ('none': skip that table)")
    p.add_argument("--out", default=None, help="append the tables to this Markdown file")
    p.set_defaults(func=cmd_perf)

    p = sub.add_parser("ui", help="serve the MLflow UI on 127.0.0.1")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_ui)
    return parser


def sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt("terminated (SIGTERM)")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, sigterm_as_interrupt)  # a killed run still ends KILLED in MLflow, not RUNNING
    try:
        return args.func(args)
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a training failure: the run is already marked FAILED
        from bench.train import NonFiniteLoss

        if not isinstance(e, NonFiniteLoss):
            raise
        print(f"bench: run failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
