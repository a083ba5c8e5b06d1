"""Intrinsic-dimension curves and d90 (docs/intrinsic.md): metric against trainable parameters, one line per
method; d90 = the fewest parameters reaching 90% of full fine-tuning's mean metric."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.record import INTRINSIC, eval_metric, intrinsic_name
from bench.tasks import get_task
from bench.tracking import load_runs
from methods import display_name, reference_method
from reports.render import render, save_figure, standalone_latex
from reports.runs import degenerate_mask
from reports.style import fit_ylim, method_style, metric_label, reference_line, spread_note

BELOW, ABOVE = "at or below the smallest point", "above the largest point"


@dataclass
class Point:
    knob_value: str
    lr: float
    params_method: int  # the method's own, head excluded
    params_trainable: int  # head included
    values: np.ndarray  # the metric, one per seed
    degenerate: int = 0  # runs among them flagged degenerate (bench/degenerate.py)


def primary_metric(task: str) -> str:
    """The task entry's curve metric on its first dev split (MRPC: accuracy, whose F1 passes 90% of full
    FT by always answering 'paraphrase')."""
    t = get_task(task)
    return eval_metric(t.dev_splits[0], t.curve_metric)


def load_points(df: pd.DataFrame, metric: str) -> dict[str, list[Point]]:
    """method -> points sorted by size; at each knob value the lr with the best mean wins (the same rule
    for every method, full FT included)."""
    col = f"metrics.best_{metric}"
    if col not in df:
        raise BenchError(f"runs have no metric best_{metric}")
    curves: dict[str, list[Point]] = {}
    for (method, knob_value), g in df.groupby(["tags.method", "tags.knob_value"]):
        best = None
        for lr, h in g.groupby("params.lr"):
            p = Point(
                knob_value,
                float(lr),
                int(h["metrics.params_method"].iloc[0]),
                int(h["metrics.params_trainable"].iloc[0]),
                h[col].to_numpy(dtype=float),
                int(degenerate_mask(h).sum()),
            )
            if best is None or p.values.mean() > best.values.mean():
                best = p
        curves.setdefault(method, []).append(best)
    for pts in curves.values():
        pts.sort(key=lambda p: p.params_trainable)
    return curves


def d90(sizes, means, tau: float) -> tuple[float, str]:
    """Monotone curve (running max over increasing size); crossing of tau interpolated in log10(size)."""
    sizes, ys = np.asarray(sizes, dtype=float), np.maximum.accumulate(np.asarray(means, dtype=float))
    hit = np.nonzero(ys >= tau)[0]
    if len(hit) == 0:
        return float(sizes[-1]), ABOVE
    i = hit[0]
    if i == 0:
        return float(sizes[0]), BELOW
    x0, x1 = np.log10(sizes[i - 1]), np.log10(sizes[i])
    frac = (tau - ys[i - 1]) / (ys[i] - ys[i - 1])
    return float(10 ** (x0 + frac * (x1 - x0))), "interpolated"


def target(full_mean: float, trivial: float | None = None) -> float:
    """90% of full FT's mean; with `trivial`, 90% of the way from the trivial score to full FT (g = 0.9)."""
    return 0.9 * full_mean if trivial is None else trivial + 0.9 * (full_mean - trivial)


def bootstrap_d90(
    sizes,
    point_values: list[np.ndarray],
    full_values: np.ndarray,
    n: int = 1000,
    seed: int = 0,
    trivial: float | None = None,
) -> tuple[float, float]:
    """95% interval over seeds: resample each point's seeds and full FT's seeds with replacement.
    Runs that never cross count as +inf (an open interval prints as '>')."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        tau = target(rng.choice(full_values, len(full_values)).mean(), trivial)
        means = [rng.choice(v, len(v)).mean() for v in point_values]
        value, status = d90(sizes, means, tau)
        out.append(np.inf if status == ABOVE else value)
    # Empirical quantiles without interpolation: interpolating between two +inf resamples gives nan.
    lo, hi = np.quantile(out, [0.025, 0.975], method="inverted_cdf")
    return float(lo), float(hi)


def analyse(df: pd.DataFrame, task: str, metric: str | None = None) -> dict:
    metric = metric or primary_metric(task)
    curves = load_points(df, metric)
    ref = reference_method()
    if ref not in curves:
        raise BenchError("no full fine-tuning runs: the 90% target needs them (run `bench intrinsic` first)")
    full = curves[ref][0]
    tau = target(full.values.mean())
    trivial = (
        float(df[f"metrics.baseline_{metric}"].dropna().iloc[0])
        if f"metrics.baseline_{metric}" in df
        else None
    )
    # The 90%-of-full target, and where a trivial score exists, the chance-corrected one (g >= 0.9): on
    # MRPC 90% of full FT's accuracy can sit below what always answering "paraphrase" scores.
    targets = {"90% of full": None} | (
        {"g >= 0.9": trivial} if trivial is not None and full.values.mean() > trivial else {}
    )
    rows = []
    for method, pts in curves.items():
        if method == ref:
            continue
        means = [p.values.mean() for p in pts]
        for with_head in (True, False):
            sizes = [p.params_trainable if with_head else p.params_method for p in pts]
            keep = [i for i, s in enumerate(sizes) if s > 0]  # head-only has no method parameters
            if not keep:
                continue
            s, m, v = [sizes[i] for i in keep], [means[i] for i in keep], [pts[i].values for i in keep]
            for target_name, base in targets.items():
                value, status = d90(s, m, target(full.values.mean(), base))
                lo, hi = bootstrap_d90(s, v, full.values, trivial=base)
                rows.append(
                    {
                        "method": method,
                        "head": with_head,
                        "target": target_name,
                        "d90": value,
                        "status": status,
                        "lo": lo,
                        "hi": hi,
                        "points": len(keep),
                        "seeds": min(len(x) for x in v),
                    }
                )
    return {
        "metric": metric,
        "tau": tau,
        "full": full,
        "curves": curves,
        "rows": rows,
        "trivial": trivial,
        "tau_g": target(full.values.mean(), trivial) if "g >= 0.9" in targets else None,
    }


def chance_corrected(m: float, trivial: float | None, full: float) -> float | None:
    """g = (m - m_trivial) / (m_full - m_trivial)."""
    if trivial is None or full == trivial:
        return None
    return (m - trivial) / (full - trivial)


def d90_table(a: dict, fmt: str, budget: str) -> str:
    def fmt_n(x):
        return "inf" if not np.isfinite(x) else f"{x:,.0f}"

    header = [
        "method",
        "counted",
        "target",
        "d90 (params)",
        "95% bootstrap interval",
        "how",
        "points",
        "seeds",
    ]
    body = []
    for r in sorted(a["rows"], key=lambda r: (r["method"], not r["head"], r["target"])):
        interval = (
            f"[{fmt_n(r['lo'])}, {fmt_n(r['hi'])}]"
            if np.isfinite(r["hi"])
            else f"[{fmt_n(r['lo'])}, >]"
            if np.isfinite(r["lo"])
            else "not reached in 97.5% of resamples"
        )
        shown = (
            f"> {r['d90']:,.0f}"
            if r["status"] == ABOVE
            else f"<= {r['d90']:,.0f}"
            if r["status"] != "interpolated"
            else f"{r['d90']:,.0f}"
        )
        body.append(
            [
                display_name(r["method"]),
                "with head" if r["head"] else "without head",
                r["target"],
                shown,
                interval,
                r["status"],
                str(r["points"]),
                str(r["seeds"]),
            ]
        )
    f = a["full"]
    caption = (
        f"d90 on {a['metric']}: fewest trainable parameters reaching 90% of full fine-tuning's mean "
        f"({f.values.mean():.4f} over {len(f.values)} seeds, target {a['tau']:.4f})"
    )
    if a["tau_g"] is not None:
        caption += (
            f", or (g >= 0.9) 90% of the way from the majority-class score {a['trivial']:.4f} to it "
            f"(target {a['tau_g']:.4f})"
        )
        if a["tau"] <= a["trivial"]:
            caption += (
                "; the 90%-of-full target is at or below the majority-class score, "
                "so only g separates methods"
            )
    caption += (
        f"; curves made monotone, crossing interpolated in log10(params), interval from 1000 bootstrap "
        f"resamples of seeds. {budget}"
    )
    return render(header, body, fmt, caption)


def points_table(a: dict, fmt: str) -> str:
    full = a["full"].values.mean()
    header = [
        "method",
        "knob",
        "lr",
        "params (with head)",
        "params (method)",
        a["metric"],
        "rel. to full",
        "chance-corrected g",
    ]
    body = []
    for method, pts in sorted(a["curves"].items()):
        for p in pts:
            m = p.values.mean()
            g = chance_corrected(m, a["trivial"], full)
            sd = f" ± {p.values.std(ddof=1):.4f}" if len(p.values) > 1 else ""
            body.append(
                [
                    display_name(method),
                    p.knob_value,
                    f"{p.lr:g}",
                    f"{p.params_trainable:,}",
                    f"{p.params_method:,}",
                    f"{m:.4f}{sd}" + (" ‡" if p.degenerate else ""),
                    f"{m / full:.3f}",
                    "-" if g is None else f"{g:.3f}",
                ]
            )
    trivial = "-" if a["trivial"] is None else f"{a['trivial']:.4f}"
    caption = (
        f"Every curve point: mean ± sample std over seeds of {a['metric']}; g = (m - trivial) / (full - "
        f"trivial) with the majority-class trivial score {trivial}."
    )
    if any(p.degenerate for pts in a["curves"].values() for p in pts):
        caption += (
            " ‡: at least one seed of the point is flagged degenerate (see the runs' `degenerate` tag)."
        )
    return render(header, body, fmt, caption)


def plot(a: dict, path_stem: str, title: str) -> list[str]:
    """Four panels: the metric and its ratio to full FT, against parameters counted with the task head (what
    trains) and without it (what the papers' %Param counts; the head-only anchor has none there). Each
    method's d90 crossing is marked on its curve (a downward triangle at the target)."""
    import matplotlib  # lazy: the Agg backend is chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = a["full"].values.mean()
    metric = metric_label(a["metric"], a.get("task"))
    fig, grid = plt.subplots(2, 2, figsize=(12, 9))
    panels = [
        (ax, relative, with_head)
        for row, with_head in zip(grid, (True, False), strict=True)
        for ax, relative in zip(row, (False, True), strict=True)
    ]
    d90 = {
        (r["method"], r["head"]): r
        for r in a["rows"]
        if r["target"] == "90% of full" and r["status"] == "interpolated"
    }
    for ax, relative, with_head in panels:
        scale = full if relative else 1
        shown, errs = [], []
        for method, all_pts in sorted(a["curves"].items()):
            pts = [p for p in all_pts if with_head or p.params_method > 0]
            if not pts:
                continue
            xs = [p.params_trainable if with_head else p.params_method for p in pts]
            ys = np.array([p.values.mean() for p in pts]) / scale
            err = np.array([p.values.std(ddof=1) if len(p.values) > 1 else 0 for p in pts]) / scale
            style = method_style(method)
            ax.errorbar(xs, ys, yerr=err, capsize=2, ls="-" if len(pts) > 1 else "none", **style)
            shown += list(ys)
            errs += list(err)
            hit = d90.get((method, with_head))
            if hit is not None:
                ax.plot(
                    [hit["d90"]],
                    [a["tau"] / scale],
                    marker="v",
                    color=style["color"],
                    markersize=9,
                    markeredgecolor="black",
                    ls="none",
                )
        fit_ylim(ax, shown, errs)
        reference_line(ax, 0.9 if relative else a["tau"], "90% of full FT", color="gray", ls="--")
        if a["trivial"] is not None:
            reference_line(ax, a["trivial"] / scale, "majority class", color="#D55E00", ls=":")
        if a["tau_g"] is not None:
            reference_line(ax, a["tau_g"] / scale, "g = 0.9 (chance-corrected)", color="#D55E00", ls="--")
        ax.set_xscale("log")
        ax.set_xlabel(
            "trainable parameters, "
            + ("task head included" if with_head else "the method's own (head excluded)")
            + ", log scale"
        )
        ax.set_ylabel(f"{metric} / full FT's" if relative else metric)
        ax.grid(alpha=0.3)
    grid[0][0].plot(
        [], [], marker="v", color="gray", markeredgecolor="black", ls="none", label="d90 crossing"
    )
    # One legend for the four panels, below them: inside a panel it covers the highest points.
    shown_labels: dict = {}
    for ax in (a for row in grid for a in row):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            shown_labels.setdefault(label, handle)
    fig.legend(
        shown_labels.values(),
        shown_labels.keys(),
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=3,
        fontsize=8,
    )

    fig.suptitle(textwrap.fill(title, 150), fontsize=10)

    return save_figure(fig, path_stem)


def write_report(
    model: str,
    task_name: str,
    metric: str | None,
    fmt: str,
    out_dir: str,
    tracking_uri: str | None,
    standalone: bool = False,
    echo=print,
) -> str:
    """`bench report intrinsic`: d90 tables (md + tex) and the curve figure (PNG + PDF) of one grid;
    returns the text to print (LaTeX with standalone: one complete document; the files written are said
    through echo)."""
    task = get_task(task_name)
    name = intrinsic_name(model, task.name)
    df = load_runs(tracking_uri, phase=INTRINSIC)
    df = df[df.get("tags.intrinsic") == name] if "tags.intrinsic" in df else df.iloc[0:0]
    if df.empty:
        raise BenchError(
            f"no finished runs of {name}: run `bench intrinsic --model {model} --task {task.name}`"
        )
    a = analyse(df, task.name, metric)
    seeds = sorted(df["tags.seed"].unique())
    n_train = str(df["params.max_train_samples"].iloc[0])
    n_train = "all" if n_train in ("None", "nan") else f"the first {n_train}"
    budget = (
        f"Budget: {len(seeds)} seeds per point, {df['params.epochs'].iloc[0]} epochs on {n_train} "
        f"training examples, {len(df)} runs."
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    a["task"] = task.name
    files = plot(
        a,
        str(out / name),
        f"{Path(model).name} on {task.title}: {metric_label(a['metric'])} against "
        f"trainable parameters; {spread_note(len(seeds))}. {budget}",
    )
    (out / f"{name}-d90.md").write_text(d90_table(a, "md", budget) + "\n" + points_table(a, "md"))
    (out / f"{name}-d90.tex").write_text(d90_table(a, "latex", budget))
    wrote = "wrote " + ", ".join(files + [str(out / f"{name}-d90.md"), str(out / f"{name}-d90.tex")])
    text = "\n".join([d90_table(a, fmt, budget), points_table(a, fmt)])
    if fmt == "latex" and standalone:
        echo(wrote)
        return standalone_latex(text)
    return text + "\n" + wrote


# Aghajanyan et al. 2020, Table 1 (docs/intrinsic.md): published d90 of SAID and DID, and the models' sizes.
PUBLISHED_D90 = {
    "mrpc": {
        "BERT-base": (110e6, 1608, 1861),
        "BERT-large": (340e6, 1037, 2493),
        "RoBERTa-base": (125e6, 896, 1000),
        "RoBERTa-large": (355e6, 207, 322),
    },
    "qqp": {
        "BERT-base": (110e6, 8030, 9295),
        "BERT-large": (340e6, 1200, 1389),
        "RoBERTa-base": (125e6, 896, 1389),
        "RoBERTa-large": (355e6, 774, 774),
    },
}


def across_models(
    models: list[str], task_name: str, metric: str | None, fmt: str, out_dir: str, tracking_uri: str | None
) -> str:
    """`bench report intrinsic --models a,b`: one figure of d90 against model size (backbone parameters),
    one line per method, each model's grid analysed as `bench report intrinsic` does (90% of full FT, head
    included), with Aghajanyan et al.'s published SAID/DID d90 as reference markers labelled as published."""
    import matplotlib  # lazy: the Agg backend is chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task = get_task(task_name)
    df_all = load_runs(tracking_uri, phase=INTRINSIC)
    points: dict[str, list[tuple]] = {}
    rows = []
    for model in models:
        name = intrinsic_name(model, task.name)
        df = df_all[df_all.get("tags.intrinsic") == name] if "tags.intrinsic" in df_all else df_all.iloc[0:0]
        if df.empty:
            raise BenchError(
                f"no finished runs of {name}: run `bench intrinsic --model {model} --task {task.name}`"
            )
        size = float(df["metrics.params_backbone"].iloc[0])
        a = analyse(df, task.name, metric)
        for r in a["rows"]:
            if r["head"] and r["target"] == "90% of full":
                points.setdefault(r["method"], []).append((size, r["d90"], r["status"]))
                rows.append(
                    [
                        Path(model).name,
                        f"{size:,.0f}",
                        display_name(r["method"]),
                        f"{r['d90']:,.0f}",
                        r["status"],
                    ]
                )

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, pts in sorted(points.items()):
        pts.sort()
        style = method_style(method)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], **style)
        for x, y, status in pts:
            if status != "interpolated":  # a bound, not a crossing: open marker
                ax.plot([x], [y], marker=style["marker"], mfc="white", color=style["color"])
    for label, (size, said, did) in PUBLISHED_D90.get(task.name, {}).items():
        ax.scatter([size], [said], marker="*", color="black", s=60, zorder=3)
        ax.scatter([size], [did], marker="x", color="black", s=40, zorder=3)
        ax.annotate(label, (size, said), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if task.name in PUBLISHED_D90:
        ax.scatter([], [], marker="*", color="black", label="SAID, published (Aghajanyan et al. 2020)")
        ax.scatter([], [], marker="x", color="black", label="DID, published (Aghajanyan et al. 2020)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("model size: pretrained encoder parameters (log)")
    ax.set_ylabel("d90: trainable params, head incl. (log)")
    ax.set_title(
        f"d90 across models on {task.title} (open markers: not crossed inside the grid, a bound)", fontsize=9
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside the axes: covers no point
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = save_figure(fig, str(out / f"intrinsic-models-{task.name}"))
    table = render(
        ["model", "backbone params", "method", "d90", "how"],
        rows,
        fmt,
        f"d90 on {task.name} per model and method (90% of full FT, head included).",
    )
    return table + "\nwrote " + ", ".join(files)
