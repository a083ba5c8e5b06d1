"""The papers' results layout: methods x tasks with %Param, head size and Avg, best per column in bold,
± std small. Two column sets: the GLUE score per task (the task entries' report columns), or a published
paper table's layout (reports/layouts), whose columns carry the metric and split the paper reports and
whose published rows are set beside ours on the same metric."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.errors import BenchError
from methods.base import has_role
from reports.render import latex_escape, render
from reports.runs import report_columns


def _column_tasks(layout=None) -> dict[str, str]:
    if layout is not None:
        return {c["label"]: c["task"] for c in layout.columns}
    return {label: task for label, task, _m, _g in report_columns()}


def average_groups(columns: list[str]) -> dict[str, list[str]]:
    """Score groups (task entries' report.group, e.g. GLUE) with at least two tasks among `columns`:
    each gets an average column."""
    tasks: dict[str, dict[str, list[str]]] = {}
    for label, task, _metric, group in report_columns():
        if label in columns and group:
            tasks.setdefault(group, {}).setdefault(task, []).append(label)
    return {g: [c for cols in by_task.values() for c in cols] for g, by_task in tasks.items() if len(by_task) > 1}


def average(cells: dict, group_columns: list[str], column_task: dict[str, str] | None = None) -> float | None:
    """Mean over the group's tasks, each task counted once (MNLI m/mm as their mean); None unless every
    column of the group has a value."""
    column_task = column_task or _column_tasks()
    if not group_columns or any(cells.get(c) is None for c in group_columns):
        return None
    by_task: dict[str, list[float]] = {}
    for label in group_columns:
        by_task.setdefault(column_task[label], []).append(cells[label])
    return float(np.mean([np.mean(v) for v in by_task.values()]))


def build(agg: pd.DataFrame, model: str, tasks: list[str] | None, methods: list[str] | None, layout=None) -> dict:
    """Our rows for `model`. With a layout, its columns (and no rows is allowed: published rows alone)."""
    sel = agg[agg["model"] == model] if not agg.empty else agg
    if sel.empty and layout is None:
        known = sorted(agg["model"].unique()) if not agg.empty else []
        raise BenchError(f"no runs for model {model!r} (choices: {', '.join(known)})")
    if tasks and not sel.empty:
        sel = sel[sel["task"].isin(tasks)]
    if methods and not sel.empty:
        sel = sel[sel["method"].isin(methods)]
    if sel.empty and layout is None:
        raise BenchError(f"no runs of model {model} for tasks {tasks or 'any'} and methods {methods or 'any'}")
    if layout is not None:
        columns = [c for c in layout.labels if not tasks or _column_tasks(layout)[c] in tasks]
        groups = {"Avg": columns} if layout.average_note and columns == layout.labels else {}
    else:
        columns = [label for label, _, _, _ in report_columns() if label in set(sel["column"])]
        groups = average_groups(columns)
    column_task = _column_tasks(layout)
    rows = []
    for method, g in (sel.groupby("method", sort=False) if not sel.empty else []):
        cells = {r.column: r for r in g.itertuples()}
        avgs = {grp: average({c: cells[c].mean for c in cells}, cols, column_task) for grp, cols in groups.items()}
        rows.append({"method": method, "percent": 100 * g["params_method"].iloc[0] / g["params_backbone"].iloc[0],
                     "head": g["params_head"].iloc[0], "cells": cells, "avgs": avgs, "n": sorted(set(g["n"]))})
    rows.sort(key=lambda r: (not has_role(r["method"], "reference"), r["percent"]))  # full FT heads the table
    published = []
    if layout is not None:
        for p in layout.published:
            if methods and p["method"] not in methods:
                continue
            values = {c: p["values"].get(c) for c in columns}
            # The average as the paper printed it (tests check that our rule recomputes it), else ours.
            avgs = {grp: p.get("avg", average(values, cols, column_task)) for grp, cols in groups.items()}
            published.append({**p, "cells": values, "avgs": avgs})
    best = {c: max([r["cells"][c].mean for r in rows if c in r["cells"]]
                   + [p["cells"][c] for p in published if p["cells"][c] is not None], default=None) for c in columns}
    best_avg = {grp: max([r["avgs"][grp] for r in rows if r["avgs"][grp] is not None]
                         + [p["avgs"][grp] for p in published if p["avgs"][grp] is not None], default=None)
                for grp in groups}
    return {"model": model, "columns": columns, "groups": groups, "rows": rows, "published": published,
            "best": best, "best_avg": best_avg, "sel": sel, "layout": layout}


def average_label(group: str, groups: dict) -> str:
    return "Avg" if len(groups) == 1 else f"{group} Avg"


def _caption(t: dict, budget: str) -> str:
    seeds = "/".join(map(str, sorted({n for r in t["rows"] for n in r["n"]})))
    spread = f"mean ± sample std over {seeds} seeds" if seeds else "none in this store"
    params = "%Param: method parameters (head excluded) / backbone; Head: the task head's parameters (trained by every method)."
    layout = t["layout"]
    if layout is None:
        return (f"{t['model']}, dev sets: GLUE score x100 (MRPC, QQP: mean of F1 and accuracy; STS-B: mean of "
                f"Pearson and Spearman; CoLA: MCC; MNLI m/mm, others: accuracy; CoNLL03: entity F1), {spread}. "
                f"{params} {_avg_caption(t['groups'])}Bold: best per column. {budget}").strip()
    metrics = "; ".join(f"{c['label']} {c['metric']}" for c in layout.columns if c["label"] in t["columns"])
    ours = sorted({c["ours"].split("_")[0] if c["ours"].startswith("test") else "dev" for c in layout.columns})
    split_note = (f"Published rows: {layout.published_split} set, as printed by their source; ours: "
                  f"{' and '.join(ours)} set(s) at the best dev epoch, {spread}")
    if layout.published_split not in ours:
        split_note += f" (a different split from the published {layout.published_split}: compare with care)"
    sources = "; ".join(f"{p['label']}: {p['source']}" for p in t["published"])
    return (f"{layout.title}, x100. Metrics per column: {metrics}. {split_note}. {params} "
            + (f"{layout.average_note}. " if t["groups"] else "")
            + (f"Sources: {sources}. " if sources else "")
            + f"Bold: best per column over all rows. {budget}").strip()


def render_results(t: dict, fmt: str, budget: str = "") -> str:
    cols, rows, groups, published = t["columns"], t["rows"], t["groups"], t["published"]
    avg_labels = [average_label(g, groups) for g in groups]
    caption = _caption(t, budget)
    if fmt == "csv":  # numbers, not formatted strings: one mean, std and n column per metric column
        header = ["method", "source", "percent_param", "head_params",
                  *(f"{c} {k}" for c in cols for k in ("mean", "std", "n")), *avg_labels]
        body = [[r["method"], "ours", f"{r['percent']:.6f}", f"{r['head']:.0f}",
                 *(x for c in cols for x in ((f"{r['cells'][c].mean:.4f}", f"{r['cells'][c].std:.4f}",
                                              str(r["cells"][c].n)) if c in r["cells"] else ("", "", ""))),
                 *("" if r["avgs"][g] is None else f"{r['avgs'][g]:.4f}" for g in groups)] for r in rows]
        body += [[p["label"], "published", "", "", *(x for c in cols for x in (
            ("" if p["cells"][c] is None else f"{p['cells'][c]:.4f}"), "", "")),
            *("" if p["avgs"][g] is None else f"{p['avgs'][g]:.4f}" for g in groups)] for p in published]
        return render(header, body, "csv")
    header = ["Method", "%Param", "Head", *cols, *avg_labels]

    def cell_text(value, best, sd=None, n=1):
        if value is None:
            return "-", "--"
        num = f"{value:.1f}"
        is_best = best is not None and np.isclose(value, best)
        plain = (f"**{num}**" if is_best and fmt == "md" else num) + (f" ± {sd:.1f}" if n > 1 else "")
        latex = (f"\\textbf{{{num}}}" if is_best else num) + (f"{{\\scriptsize$\\pm${sd:.1f}}}" if n > 1 else "")
        return plain, latex

    plain, latex = [], []
    for r in rows:
        p = [r["method"], f"{r['percent']:.3f}%", f"{r['head']:,.0f}"]
        lx = [latex_escape(r["method"]), f"{r['percent']:.3f}\\%", f"{r['head']:,.0f}"]
        for c in cols:
            cell = r["cells"].get(c)
            a, b = cell_text(None if cell is None else cell.mean, t["best"][c], *(() if cell is None else (cell.std, cell.n)))
            p.append(a)
            lx.append(b)
        for g in groups:
            a, b = cell_text(r["avgs"][g], t["best_avg"][g])
            p.append(a)
            lx.append(b)
        plain.append(p)
        latex.append(lx)
    rule = len(plain) if published and plain else None
    for pub in published:
        texts = [cell_text(pub["cells"][c], t["best"][c]) for c in cols]
        texts += [cell_text(pub["avgs"][g], t["best_avg"][g]) for g in groups]
        plain.append([f"{pub['label']} (published)", pub["param"], "-", *(a for a, _ in texts)])
        latex.append([f"\\textit{{{latex_escape(pub['label'])}}}", latex_escape(pub["param"]), "--",
                      *(b for _, b in texts)])
    return render(header, plain, fmt, caption, latex_rows=latex, align="lrr" + "c" * (len(cols) + len(groups)),
                  rule_before=rule)


def _avg_caption(groups: dict) -> str:
    if not groups:
        return ""
    return " ".join(f"{average_label(g, groups)}: mean over the {g} tasks, each task once (MNLI m/mm as their mean)."
                    for g in groups) + " "


def results_report(tracking_uri: str | None, model: str, tasks: list[str] | None, methods: list[str] | None,
                   fmt: str, published: bool = False, all_runs: bool = False, standalone: bool = False,
                   layout_name: str | None = None) -> str:
    """`bench report table`: the results table of tracked runs (sweeps' final seeds, or every run); with
    --published or --layout, a paper table's columns and its published rows (alone if the store has no
    runs of the model)."""
    from bench.record import FINAL
    from reports.published import get_layout
    from reports.render import standalone_latex
    from reports.runs import aggregate, load_runs, sweep_budgets

    layout = get_layout(layout_name, model) if (published or layout_name) else None
    try:
        df = load_runs(tracking_uri, phase=None if all_runs else FINAL)
    except BenchError:
        if layout is None:
            raise
        df = pd.DataFrame()
    agg = aggregate(df, layout.report_columns() if layout else None) if not df.empty else pd.DataFrame()
    t = build(agg, model, tasks, methods, layout)
    studies = {s for x in t["sel"].get("studies", []) for s in x.split(",") if s} if not t["sel"].empty else set()
    budgets = sweep_budgets(load_runs(tracking_uri, phase=None), studies) if studies else {}
    budget = (f"Sweep budget: {', '.join(sorted(set(budgets.values())))} trials per method." if budgets
              else "Runs not from sweeps (no search budget)." if t["rows"]
              else f"No runs of {model} in the store: published rows only.")
    out = render_results(t, fmt, budget)
    return standalone_latex(out) if fmt == "latex" and standalone else out
