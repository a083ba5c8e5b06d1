"""`bench report pareto`: per task, the main metric against a cost (the method's %Param, training time or
peak memory), from tracked runs, with the Pareto frontier (no other point is both cheaper and better):
the view of peft's method comparison, drawn from MLflow. One point per method (per configuration with
--all-runs), mean ± sample std over its seeds on both axes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import BenchError, choices_error
from bench.record import FINAL
from bench.tasks import get_task
from bench.tracking import load_runs
from methods import display_name
from reports.render import render, save_figure
from reports.runs import degenerate_mask
from reports.style import method_style, metric_label, percent_text, reference_line, spread_note

# cost name -> (logged metric(s), axis label, log scale, scale factor, table column)
COSTS = {
    "params": (
        ("params_method",),
        "%Param: the method's parameters, % of the backbone's",
        True,
        None,
        "%Param",
    ),
    "time": (("train_seconds",), "training time per run, seconds", True, 1.0, "train seconds"),
    "memory": (
        ("peak_cuda_allocated_bytes", "peak_rss_bytes"),
        "peak memory in training, MiB",
        False,
        2.0**-20,
        "peak MiB",
    ),
}


def points(df: pd.DataFrame, model: str, task, cost: str, by_config: bool) -> pd.DataFrame:
    """One row per method (or configuration): metric and cost, mean, std and n over seeds."""
    metric_col = f"metrics.best_{task.dev_splits[0]}_{task.main_metric}"
    sel = (
        df[(df.get("tags.model") == model) & (df.get("tags.task") == task.name)]
        if "tags.model" in df
        else df[:0]
    )
    if sel.empty or metric_col not in sel:
        return pd.DataFrame()
    names, _, _, factor, _ = COSTS[cost]
    cost_col = next(
        (f"metrics.{n}" for n in names if f"metrics.{n}" in sel and sel[f"metrics.{n}"].notna().any()), None
    )
    if cost_col is None:
        raise BenchError(
            f"no runs of {model} on {task.name} logged {' or '.join(names)} (cost {cost}): runs "
            "made before bench logged it; rerun them or pick another --x"
        )
    sel = sel[sel[metric_col].notna() & sel[cost_col].notna()]
    baseline_col = f"metrics.baseline_{task.dev_splits[0]}_{task.main_metric}"
    rows = []
    for key, g in sel.groupby(["tags.method"] + (["tags.config_hash"] if by_config else [])):
        method = key[0] if isinstance(key, tuple) else key
        x = g[cost_col].astype(float) * (factor or 1.0)
        if factor is None:  # %Param
            x = 100 * x / g["metrics.params_backbone"].astype(float)
        y = 100 * g[metric_col].astype(float)
        rows.append(
            {
                "method": method,
                "config": key[1] if by_config else "",
                "x": x.mean(),
                "x_std": x.std(ddof=1) if len(x) > 1 else 0.0,
                "y": y.mean(),
                "y_std": y.std(ddof=1) if len(y) > 1 else 0.0,
                "n": len(g),
                "degenerate": int(degenerate_mask(g).sum()),
                "cost_metric": cost_col[8:],
                "baseline": 100 * g[baseline_col].astype(float).mean() if baseline_col in g else np.nan,
            }
        )
    out = pd.DataFrame(rows)
    out["frontier"] = frontier(out["x"].to_numpy(), out["y"].to_numpy())
    return out


def frontier(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True where no other point has cost <= and metric >= with one of them strict."""
    keep = np.ones(len(x), dtype=bool)
    for i in range(len(x)):
        dominated = (x <= x[i]) & (y >= y[i]) & ((x < x[i]) | (y > y[i]))
        keep[i] = not dominated.any()
    return keep


def pareto_report(
    tracking_uri: str | None,
    model: str,
    tasks: list[str] | None,
    cost: str,
    fmt: str,
    out_dir: str,
    all_runs: bool = False,
    echo=print,
) -> str:
    import matplotlib  # lazy: the Agg backend is chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    if cost not in COSTS:
        raise choices_error("--x", cost, COSTS)
    df = load_runs(tracking_uri, phase=None if all_runs else FINAL)
    models = sorted(df["tags.model"].dropna().unique()) if "tags.model" in df else []
    if model not in models:
        raise choices_error("--model (no runs of it)", model, models)
    task_names = tasks or sorted(df[df["tags.model"] == model]["tags.task"].dropna().unique())
    per_task = {}
    for name in task_names:
        task = get_task(name)
        p = points(df, model, task, cost, all_runs)
        if not p.empty:
            per_task[task.name] = (task, p)
    if not per_task:
        raise BenchError(f"no runs of {model} for tasks {', '.join(task_names)}")
    label, log = COSTS[cost][1], COSTS[cost][2]
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    fig, axes = plt.subplots(1, len(per_task), figsize=(7.4 * len(per_task), 4.2), squeeze=False)
    rows, seeds = [], set()
    for ax, (task, p) in zip(axes[0], per_task.values(), strict=True):
        for r in p.itertuples():
            style = method_style(r.method)
            if r.config:
                style["label"] += f" [{r.config[:6]}]"
            ax.errorbar([r.x], [r.y], xerr=[r.x_std], yerr=[r.y_std], capsize=2, ls="none", **style)
            rows.append(
                [
                    task.title,
                    display_name(r.method)
                    + (f" [{r.config[:6]}]" if r.config else "")
                    + (" ‡" if r.degenerate else ""),
                    percent_text(r.x) if cost == "params" else f"{r.x:.4g}",
                    f"{r.y:.1f}" + (f" ± {r.y_std:.1f}" if r.n > 1 else ""),
                    str(r.n),
                    "yes" if r.frontier else "",
                ]
            )
            seeds.add(r.n)
        f = p[p["frontier"]].sort_values("x")
        ax.step(f["x"], f["y"], where="post", color="gray", lw=1, ls="--", label="Pareto frontier")
        if log:  # ticks at 1, 2, 5 x 10^k, labelled as plain numbers (0.02, not 2x10^-2)
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(plain)
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        if p["baseline"].notna().any():  # what always answering the training majority (or mean) scores
            reference_line(ax, float(p["baseline"].mean()), "trivial baseline", color="black", ls=":")
        ax.set_xlabel(label + (" (log scale)" if log else ""))
        ax.set_ylabel(metric_label(f"{task.dev_splits[0]}_{task.main_metric}", task.name) + " x100")
        ax.set_title(task.title)
        ax.grid(alpha=0.3)
        ax.legend(
            fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0)
        )  # beside the axes: no point hidden
    what = "sweeps' final runs" if not all_runs else "every finished run, one point per configuration"
    note = (
        f"{Path(model).name}: dev metric x100 against {label}; "
        f"{what}; {spread_note(max(seeds))} (points with fewer seeds have shorter or no bars)."
    )

    fig.suptitle(textwrap.fill(note, 70 * len(per_task)), fontsize=8)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = save_figure(fig, str(out / f"pareto-{Path(model).name}-{cost}"))
    echo("wrote " + ", ".join(files))
    caption = (
        f"{note} Frontier: no other point of the task is both cheaper and better. Cost from the runs' "
        f"`{next(iter(per_task.values()))[1]['cost_metric'].iloc[0]}` metric."
    )
    if any("‡" in r[1] for r in rows):
        caption += (
            " ‡: at least one of the point's runs is flagged degenerate (see the runs' `degenerate` tag)."
        )
    return render(
        [
            "task",
            "method",
            COSTS[cost][4],
            "metric x100",
            "seeds",
            "frontier",
        ],
        rows,
        fmt,
        caption,
        label=f"tab:pareto-{Path(model).name}-{cost}",
    )
