"""`bench report budget`: the expected best dev score a method reaches within k tuning trials, from its
sweep's trials (Dodge et al. 2019, "Show Your Work": the expectation of the maximum of k trials drawn from
those run, with its spread), against trials and against compute (k times the mean training seconds of a
trial). It answers "which method wins at k trials": a method that needs 40 trials to shine and one that
needs 4 look different here while their final rows may not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import BenchError, choices_error
from bench.record import TRIAL
from bench.tasks import get_task
from bench.tracking import load_runs
from methods import display_name
from reports.render import render, save_figure
from reports.runs import report_columns
from reports.stats import expected_max
from reports.style import method_style, metric_label

TIME = "metrics.train_seconds"
STEPS = "metrics.steps"
FLOPS = "metrics.train_flops"  # estimated (bench.params.flops_per_token x real training tokens)


def budget_points(n: int) -> list[int]:
    """The trial counts a table shows: 1, 2, 5, 10, 20, 50, ... up to n, and n itself."""
    ks = [k for m in (1, 10, 100, 1000) for k in (m, 2 * m, 5 * m) if k < n]
    return [*ks, n]


def score_metric(task) -> str:
    """The score the report tables show for the task (its first report column, e.g. dev_glue_score)."""
    return next((m for _label, name, m, _group in report_columns() if name == task.name), None) or (
        f"{task.dev_splits[0]}_{task.main_metric}"
    )


def curves(df: pd.DataFrame, model: str, task) -> list[dict]:
    """One curve per study (a method's sweep): its COMPLETE trials' dev scores x100, E[max] and std at every
    k from 1 to n, and the mean training seconds of a trial."""
    metric = f"metrics.best_{score_metric(task)}"
    if "tags.model" not in df or metric not in df:
        return []
    sel = df[(df["tags.model"] == model) & (df["tags.task"] == task.name) & df[metric].notna()]
    out = []
    for (method, study), g in sel.groupby(["tags.method", "tags.study"]):
        values = 100 * g[metric].astype(float).to_numpy()
        ks = np.arange(1, len(values) + 1)
        stats = [expected_max(values, int(k)) for k in ks]
        seconds = float(g[TIME].astype(float).mean()) if TIME in g and g[TIME].notna().any() else None
        flops = float(g[FLOPS].astype(float).mean()) if FLOPS in g and g[FLOPS].notna().any() else None
        steps = float(g[STEPS].astype(float).mean()) if STEPS in g and g[STEPS].notna().any() else None
        out.append(
            {
                "method": method,
                "study": study,
                "values": values,
                "k": ks,
                "mean": np.array([s[0] for s in stats]),
                "std": np.array([s[1] for s in stats]),
                "seconds": seconds,
                "flops": flops,
                "steps": steps,
            }
        )
    return sorted(out, key=lambda c: (display_name(c["method"]), c["study"]))


def budget_report(
    tracking_uri: str | None, model: str, task_name: str, fmt: str, out_dir: str, echo=print
) -> str:
    import matplotlib  # lazy: the Agg backend is chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    task = get_task(task_name)
    df = load_runs(tracking_uri, phase=TRIAL)
    models = sorted(df["tags.model"].dropna().unique()) if "tags.model" in df else []
    if model not in models:
        raise choices_error("--model (no sweep trials of it)", model, models)
    found = curves(df, model, task)
    if not found:
        raise BenchError(f"no sweep trials of {model} on {task.name} (they come from `bench sweep`)")
    label = metric_label(score_metric(task), task.name) + " x100"
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for c in found:
        style = method_style(c["method"])
        if len([x for x in found if x["method"] == c["method"]]) > 1:
            style["label"] += f" ({c['study']})"
        low, high = c["values"].min(), c["values"].max()
        band = (np.clip(c["mean"] - c["std"], low, high), np.clip(c["mean"] + c["std"], low, high))
        xs = [c["k"], c["k"] * c["seconds"] if c["seconds"] else None]
        for ax, x in zip(axes, xs, strict=True):
            if x is None:
                continue
            ax.plot(x, c["mean"], lw=1.5, markevery=[0, len(x) - 1], **style)
            ax.fill_between(x, *band, color=style["color"], alpha=0.15, lw=0)
    axes[0].set_xlabel("tuning trials k")
    axes[1].set_xlabel("compute: k x mean training seconds of a trial")
    for ax in axes:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())  # 1, 2, 5, 10 trials, not 2x10^0
        ax.xaxis.set_minor_formatter(ScalarFormatter())
        ax.set_ylabel(f"expected best {label}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    note = (
        f"{Path(model).name}, {task.title}: expected best dev score of k trials drawn from each sweep's "
        "COMPLETE trials (pruned and failed trials excluded), shaded ±1 std of that maximum "
        "(Dodge et al. 2019)"
    )
    fig.suptitle(note, fontsize=8)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    echo("wrote " + ", ".join(save_figure(fig, str(out / f"budget-{Path(model).name}-{task.name}"))))
    ks = budget_points(max(len(c["values"]) for c in found))
    header = [
        "method",
        "study",
        "trials",
        "steps / trial",
        "s / trial",
        "TFLOP / trial",
        *(f"k={k}" for k in ks),
    ]
    rows, json_rows = [], []
    for c in found:
        n = len(c["values"])
        cells = [f"{c['mean'][k - 1]:.1f} ± {c['std'][k - 1]:.1f}" if k <= n else "-" for k in ks]
        seconds = f"{c['seconds']:.1f}" if c["seconds"] else "-"
        flops = f"{c['flops'] / 1e12:.3g}" if c["flops"] else "-"
        steps = f"{c['steps']:.0f}" if c["steps"] else "-"
        rows.append([display_name(c["method"]), c["study"], str(n), steps, seconds, flops, *cells])
        json_rows.append(
            {
                "method": c["method"],
                "study": c["study"],
                "trials": n,
                "seconds_per_trial": c["seconds"],
                "flops_per_trial": c["flops"],
                "steps_per_trial": c["steps"],
                "trial_scores": c["values"].tolist(),
                "expected_max": {int(k): float(c["mean"][k - 1]) for k in c["k"]},
                "expected_max_std": {int(k): float(c["std"][k - 1]) for k in c["k"]},
            }
        )
    caption = (
        f"{note}. Each cell: E[max] ± std over k draws with replacement from the trials run; "
        "a method's cells stop at the trials its sweep ran. TFLOP / trial: estimated training FLOPs of a "
        "complete trial (6N per real token with weight gradients, 4N with a frozen backbone, N the "
        "encoder's parameters without embeddings)."
    )
    return render(
        header, rows, fmt, caption, label=f"tab:budget-{Path(model).name}-{task.name}", json_rows=json_rows
    )
