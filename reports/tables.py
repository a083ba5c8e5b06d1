"""The papers' results layout: methods x tasks with %Param and Avg, best per column in bold, ± std small."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.errors import BenchError
from reports.render import latex_escape, render
from reports.runs import report_columns

# METHODS.md "Published results": (model prefix, label, split, %Param, {column: score}).
PUBLISHED = [
    ("bert-large", "Full FT (Houlsby et al., published, test)", "test", "100%",
     {"CoLA": 60.5, "SST-2": 94.9, "MRPC": 89.3, "STS-B": 87.6, "QQP": 72.1, "MNLI-m": 86.7, "MNLI-mm": 85.9,
      "QNLI": 91.1, "RTE": 70.1}),
    ("bert-large", "Adapter (Houlsby et al., published, test)", "test", "3.6%",
     {"CoLA": 59.5, "SST-2": 94.0, "MRPC": 89.5, "STS-B": 86.9, "QQP": 71.8, "MNLI-m": 84.9, "MNLI-mm": 85.1,
      "QNLI": 90.7, "RTE": 71.5}),
    ("roberta-large", "Full FT (Hu et al., published, dev)", "dev", "355M",
     {"MNLI-m": 90.2, "SST-2": 96.4, "MRPC": 90.9, "CoLA": 68.0, "QNLI": 94.7, "QQP": 92.2, "RTE": 86.6,
      "STS-B": 92.4}),
    ("roberta-large", "LoRA (Hu et al., published, dev)", "dev", "0.8M",
     {"MNLI-m": 90.6, "SST-2": 96.2, "MRPC": 90.9, "CoLA": 68.2, "QNLI": 94.9, "QQP": 91.6, "RTE": 87.4,
      "STS-B": 92.6}),
]


def average_groups(columns: list[str]) -> dict[str, list[str]]:
    """Score groups (task entries' report.group, e.g. GLUE) with at least two tasks among `columns`:
    each gets an average column."""
    tasks: dict[str, dict[str, list[str]]] = {}
    for label, task, _metric, group in report_columns():
        if label in columns and group:
            tasks.setdefault(group, {}).setdefault(task, []).append(label)
    return {g: [c for cols in by_task.values() for c in cols] for g, by_task in tasks.items() if len(by_task) > 1}


def average(cells: dict, group_columns: list[str]) -> float | None:
    """Mean over the group's tasks, each task counted once (MNLI m/mm as their mean)."""
    if not group_columns or any(c not in cells for c in group_columns):
        return None
    by_task: dict[str, list[float]] = {}
    for label, task, _metric, _group in report_columns():
        if label in group_columns:
            by_task.setdefault(task, []).append(cells[label])
    return float(np.mean([np.mean(v) for v in by_task.values()]))


def build(agg: pd.DataFrame, model: str, tasks: list[str] | None, methods: list[str] | None) -> dict:
    sel = agg[agg["model"] == model]
    if sel.empty:
        known = sorted(agg["model"].unique())
        raise BenchError(f"no runs for model {model!r} (choices: {', '.join(known)})")
    if tasks:
        sel = sel[sel["task"].isin(tasks)]
    if methods:
        sel = sel[sel["method"].isin(methods)]
    if sel.empty:
        raise BenchError(f"no runs of model {model} for tasks {tasks or 'any'} and methods {methods or 'any'}")
    columns = [label for label, _, _, _ in report_columns() if label in set(sel["column"])]
    groups = average_groups(columns)
    rows = []
    for method, g in sel.groupby("method", sort=False):
        cells = {r.column: r for r in g.itertuples()}
        avgs = {grp: average({c: cells[c].mean for c in cells}, cols) for grp, cols in groups.items()}
        rows.append({"method": method, "percent": 100 * g["params_method"].iloc[0] / g["params_backbone"].iloc[0],
                     "cells": cells, "avgs": avgs, "n": sorted(set(g["n"]))})
    rows.sort(key=lambda r: (not _is_reference(r["method"]), r["percent"]))
    best = {c: max((r["cells"][c].mean for r in rows if c in r["cells"]), default=None) for c in columns}
    best_avg = {grp: max((r["avgs"][grp] for r in rows if r["avgs"][grp] is not None), default=None)
                for grp in groups}
    return {"model": model, "columns": columns, "groups": groups, "rows": rows, "best": best, "best_avg": best_avg,
            "sel": sel}


def _is_reference(method: str) -> bool:
    """Full fine-tuning heads the table; a method no longer registered sorts with the rest."""
    from methods import REGISTRY

    return method in REGISTRY and REGISTRY[method].reference


def average_label(group: str, groups: dict) -> str:
    return "Avg" if len(groups) == 1 else f"{group} Avg"


def render_results(t: dict, fmt: str, published: bool = False, budget: str = "") -> str:
    cols, rows, groups = t["columns"], t["rows"], t["groups"]
    header = ["Method", "%Param", *cols, *(average_label(g, groups) for g in groups)]
    seeds = sorted({n for r in rows for n in r["n"]})
    caption = (f"{t['model']}, dev sets: GLUE score x100 (MRPC, QQP: mean of F1 and accuracy; STS-B: mean of "
               f"Pearson and Spearman; CoLA: MCC; MNLI m/mm, others: accuracy; CoNLL03: entity F1), mean ± "
               f"sample std over {'/'.join(map(str, seeds))} seeds. %Param: method parameters (head excluded) / "
               f"backbone. {_avg_caption(groups)}Bold: best per column. {budget}").strip()
    if fmt == "csv":
        body = [[r["method"], f"{r['percent']:.4f}", *(
            f"{r['cells'][c].mean:.2f}±{r['cells'][c].std:.2f} (n={r['cells'][c].n})" if c in r["cells"] else ""
            for c in cols), *("" if r["avgs"][g] is None else f"{r['avgs'][g]:.2f}" for g in groups)] for r in rows]
        return render(header, body, "csv")
    plain, latex = [], []
    for r in rows:
        p, lx = [r["method"], f"{r['percent']:.3f}%"], [latex_escape(r["method"]), f"{r['percent']:.3f}\\%"]
        for c in cols:
            cell = r["cells"].get(c)
            if cell is None:
                p.append("-")
                lx.append("--")
                continue
            is_best = np.isclose(cell.mean, t["best"][c])
            num = f"{cell.mean:.1f}"
            sd = f" ± {cell.std:.1f}" if cell.n > 1 else ""  # one seed: no spread to report
            p.append((f"**{num}**" if is_best and fmt == "md" else num) + sd)
            lx.append((f"\\textbf{{{num}}}" if is_best else num)
                      + (f"{{\\scriptsize$\\pm${cell.std:.1f}}}" if cell.n > 1 else ""))
        for g in groups:
            value = r["avgs"][g]
            avg = "-" if value is None else f"{value:.1f}"
            best_avg = value is not None and np.isclose(value, t["best_avg"][g])
            p.append(f"**{avg}**" if best_avg and fmt == "md" else avg)
            lx.append(f"\\textbf{{{avg}}}" if best_avg else avg.replace("-", "--"))
        plain.append(p)
        latex.append(lx)
    if published:
        for prefix, label, _split, pct, scores in PUBLISHED:
            if t["model"].startswith(prefix):
                vals = [scores.get(c) for c in cols]
                avgs = [average({c: scores[c] for c in cols if c in scores}, gc) for gc in groups.values()]
                row = [label, pct, *("-" if v is None else f"{v:.1f}" for v in vals),
                       *("-" if a is None else f"{a:.1f}" for a in avgs)]
                plain.append(row)
                latex.append([f"\\textit{{{latex_escape(label)}}}", latex_escape(pct),
                              *("--" if x == "-" else x for x in row[2:])])
    return render(header, plain, fmt, caption, latex_rows=latex, align="lr" + "c" * (len(cols) + len(groups)))


def _avg_caption(groups: dict) -> str:
    if not groups:
        return ""
    return " ".join(f"{average_label(g, groups)}: mean over the {g} tasks, each task once (MNLI m/mm as their mean)."
                    for g in groups) + " "


def results_report(tracking_uri: str | None, model: str, tasks: list[str] | None, methods: list[str] | None,
                   fmt: str, published: bool = False, all_runs: bool = False, standalone: bool = False) -> str:
    """`bench report table`: the results table of tracked runs (sweeps' final seeds, or every run)."""
    from bench.record import FINAL
    from reports.render import standalone_latex
    from reports.runs import aggregate, load_runs, sweep_budgets

    df = load_runs(tracking_uri, phase=None if all_runs else FINAL)
    t = build(aggregate(df), model, tasks, methods)
    studies = {s for x in t["sel"]["studies"] for s in x.split(",") if s}
    budgets = sweep_budgets(load_runs(tracking_uri, phase=None), studies) if studies else {}
    budget = (f"Sweep budget: {', '.join(sorted(set(budgets.values())))} trials per method." if budgets
              else "Runs not from sweeps (no search budget).")
    out = render_results(t, fmt, published, budget)
    return standalone_latex(out) if fmt == "latex" and standalone else out
