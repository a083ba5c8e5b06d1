"""The papers' results layout: methods x tasks with %Param and Avg, best per column in bold, ± std small."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.errors import BenchError
from reports.render import latex_escape, render
from reports.runs import COLUMNS

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


def average(cells: dict) -> float | None:
    """GLUE-style average over the GLUE tasks present; MNLI m/mm count once, as their mean."""
    glue = {k: v for k, v in cells.items() if k != "CoNLL03"}
    if not glue:
        return None
    if "MNLI-m" in glue and "MNLI-mm" in glue:
        glue["MNLI"] = (glue.pop("MNLI-m") + glue.pop("MNLI-mm")) / 2
    return float(np.mean(list(glue.values())))


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
    columns = [label for label, _, _ in COLUMNS if label in set(sel["column"])]
    rows = []
    for method, g in sel.groupby("method", sort=False):
        cells = {r.column: r for r in g.itertuples()}
        complete = len(cells) == len(columns)
        avg = average({c: cells[c].mean for c in cells}) if complete else None
        rows.append({"method": method, "percent": 100 * g["params_method"].iloc[0] / g["params_backbone"].iloc[0],
                     "cells": cells, "avg": avg, "n": sorted(set(g["n"]))})
    order = {"full": 0}
    rows.sort(key=lambda r: (order.get(r["method"], 1), r["percent"]))
    best = {c: max((r["cells"][c].mean for r in rows if c in r["cells"]), default=None) for c in columns}
    best_avg = max((r["avg"] for r in rows if r["avg"] is not None), default=None)
    return {"model": model, "columns": columns, "rows": rows, "best": best, "best_avg": best_avg, "sel": sel}


def render_results(t: dict, fmt: str, published: bool = False, budget: str = "") -> str:
    cols, rows = t["columns"], t["rows"]
    header = ["Method", "%Param", *cols, "Avg"]
    seeds = sorted({n for r in rows for n in r["n"]})
    caption = (f"{t['model']}, dev sets: GLUE score x100 (MRPC, QQP: mean of F1 and accuracy; STS-B: mean of "
               f"Pearson and Spearman; CoLA: MCC; MNLI m/mm, others: accuracy; CoNLL03: entity F1), mean ± "
               f"sample std over {'/'.join(map(str, seeds))} seeds. %Param: method parameters (head excluded) / "
               f"backbone. Avg: GLUE tasks, MNLI m/mm counted once. Bold: best per column. {budget}").strip()
    if fmt == "csv":
        body = [[r["method"], f"{r['percent']:.4f}", *(
            f"{r['cells'][c].mean:.2f}±{r['cells'][c].std:.2f} (n={r['cells'][c].n})" if c in r["cells"] else ""
            for c in cols), "" if r["avg"] is None else f"{r['avg']:.2f}"] for r in rows]
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
        avg = "-" if r["avg"] is None else f"{r['avg']:.1f}"
        best_avg = r["avg"] is not None and np.isclose(r["avg"], t["best_avg"])
        p.append(f"**{avg}**" if best_avg and fmt == "md" else avg)
        lx.append(f"\\textbf{{{avg}}}" if best_avg else avg.replace("-", "--"))
        plain.append(p)
        latex.append(lx)
    if published:
        for prefix, label, _split, pct, scores in PUBLISHED:
            if t["model"].startswith(prefix):
                vals = [scores.get(c) for c in cols]
                avg = average({c: scores[c] for c in cols if c in scores}) if all(v is not None for v in vals) else None
                row = [label, pct, *("-" if v is None else f"{v:.1f}" for v in vals),
                       "-" if avg is None else f"{avg:.1f}"]
                plain.append(row)
                latex.append([f"\\textit{{{latex_escape(label)}}}", latex_escape(pct),
                              *("--" if x == "-" else x for x in row[2:])])
    return render(header, plain, fmt, caption, latex_rows=latex, align="lr" + "c" * (len(cols) + 1))
