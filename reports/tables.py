"""The papers' results layout: methods x tasks with %Param, head size and Avg, best per column in bold,
± std small. Two column sets: the GLUE score per task (the task entries' report columns), or a published
paper table's layout (reports/layouts), whose columns carry the metric and split the paper reports and
whose published rows are set beside ours on the same metric."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.record import FINAL
from bench.tasks import get_task
from methods import display_name, has_role
from reports.published import get_layout
from reports.render import render, standalone_latex
from reports.runs import aggregate, degenerate_mask, load_runs, report_columns, sweep_budgets
from reports.stats import ALPHA, MIN_SEEDS, against_best
from reports.style import percent_text


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
    return {
        g: [c for cols in by_task.values() for c in cols] for g, by_task in tasks.items() if len(by_task) > 1
    }


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


def build(
    agg: pd.DataFrame,
    model: str,
    tasks: list[str] | None,
    methods: list[str] | None,
    layout=None,
    stats: bool = False,
) -> dict:
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
        raise BenchError(
            f"no runs of model {model} for tasks {tasks or 'any'} and methods {methods or 'any'}"
        )
    if layout is not None:
        columns = [c for c in layout.labels if not tasks or _column_tasks(layout)[c] in tasks]
        groups = {"Avg": columns} if layout.average_note and columns == layout.labels else {}
    else:
        columns = [label for label, _, _, _ in report_columns() if label in set(sel["column"])]
        groups = average_groups(columns)
    column_task = _column_tasks(layout)
    rows = []
    keys = ["method", "config"] if "config" in sel and sel["config"].astype(bool).any() else ["method"]
    for key, g in sel.groupby(keys, sort=False) if not sel.empty else []:
        method = key[0] if isinstance(key, tuple) else key
        cells = {r.column: r for r in g.itertuples()}
        avgs = {
            grp: average({c: cells[c].mean for c in cells}, cols, column_task) for grp, cols in groups.items()
        }
        rows.append(
            {
                "method": method,
                "config": g["config"].iloc[0] if "config" in g else "",
                "knob": g["knob"].iloc[0] if "knob" in g else "",
                "percent": 100 * g["params_method"].iloc[0] / g["params_backbone"].iloc[0],
                "head": g["params_head"].iloc[0],
                "cells": cells,
                "avgs": avgs,
                "n": sorted(set(g["n"])),
            }
        )
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
    # Bold marks the best of OUR rows (with no rows of ours: the best published); a published value above
    # our best is marked instead of taking the bold.
    best = {
        c: max(
            [r["cells"][c].mean for r in rows if c in r["cells"]]
            or [p["cells"][c] for p in published if p["cells"][c] is not None],
            default=None,
        )
        for c in columns
    }
    best_avg = {
        grp: max(
            [r["avgs"][grp] for r in rows if r["avgs"][grp] is not None]
            or [p["avgs"][grp] for p in published if p["avgs"][grp] is not None],
            default=None,
        )
        for grp in groups
    }
    verdicts = {}
    if stats:  # per column: each of our rows against the best of them, over their seeds
        for c in columns:
            samples = {i: getattr(r["cells"][c], "values", []) for i, r in enumerate(rows) if c in r["cells"]}
            verdicts[c] = against_best(samples)
    return {
        "verdicts": verdicts,
        "model": model,
        "columns": columns,
        "groups": groups,
        "rows": rows,
        "published": published,
        "best": best,
        "best_avg": best_avg,
        "sel": sel,
        "layout": layout,
    }


def average_label(group: str, groups: dict) -> str:
    return "Avg" if len(groups) == 1 else f"{group} Avg"


def _score_note(columns: list[str]) -> str:
    """What each shown column's score is, from its task's definition (bench.metrics: the GLUE score is the
    mean of the task's score metrics): "MRPC: mean of f1 and accuracy; RTE: accuracy"."""
    tasks = _column_tasks()
    notes = []
    for c in columns:
        score = get_task(tasks[c]).score
        notes.append(f"{c}: " + (f"mean of {' and '.join(score)}" if len(score) > 1 else score[0]))
    return "; ".join(notes)


def _caption(t: dict, budget: str) -> str:
    seeds = "/".join(map(str, sorted({n for r in t["rows"] for n in r["n"]})))
    spread = f"mean ± sample std over {seeds} seeds" if seeds else "none in this store"
    params = (
        "%Param: method parameters (head excluded) as a percentage of the backbone's; Head: the task head's "
        "parameters (trained by every method)."
    )
    layout = t["layout"]
    if any(r.get("config") for r in t["rows"]):
        budget = (
            "One row per training configuration (every finished run), labelled by the settings that differ "
            "between its method's configurations (else its size knob), its config hash in brackets; never "
            "averaged across configurations. " + budget
        )
    if layout is None:
        return (
            f"{t['model']}, dev sets: GLUE score x100 ({_score_note(t['columns'])}), {spread}. "
            f"{params} {_avg_caption(t['groups'])}Bold: best per column. {budget}"
        ).strip()
    metrics = "; ".join(f"{c['label']} {c['metric']}" for c in layout.columns if c["label"] in t["columns"])
    ours = sorted(
        {c["ours"].split("_")[0] if c["ours"].startswith("test") else "dev" for c in layout.columns}
    )
    split_note = (
        f"Published rows: {layout.published_split} set, as printed by their source; ours: "
        f"{' and '.join(ours)} set(s) at the best dev epoch, {spread}"
    )
    if layout.published_split not in ours:
        split_note += f" (a different split from the published {layout.published_split}: compare with care)"
    sources = "; ".join(f"{p['label']}: {p['source']}" for p in t["published"])
    return (
        f"{layout.title}, x100. Metrics per column: {metrics}. {split_note}. {params} "
        + (f"{layout.average_note}. " if t["groups"] else "")
        + (f"Sources: {sources}. " if sources else "")
        + (
            "Bold: our best per column (the best published one where we have no value). "
            if t["rows"]
            else "Bold: best per column. "
        )
        + budget
    ).strip()


def row_label(r: dict) -> str:
    """A row's method as tables print it; with --all-runs, one row per configuration: what varies between the
    method's configurations (else its size knob) and its hash beside it."""
    knob = f" {r['knob']}" if r.get("knob") else ""
    return display_name(r["method"]) + (f"{knob} [{r['config'][:6]}]" if r.get("config") else "")


def render_results(t: dict, fmt: str, budget: str = "") -> str:
    cols, rows, groups, published = t["columns"], t["rows"], t["groups"], t["published"]
    avg_labels = [average_label(g, groups) for g in groups]
    caption = _caption(t, budget)
    if fmt in ("csv", "json"):  # numbers, not formatted strings: one mean, std and n column per metric column
        header = [
            "method",
            "label",
            "source",
            "config",
            "percent_param",
            "head_params",
            *(
                f"{c} {k}"
                for c in cols
                for k in ("mean", "std", "n", "seeds", "degenerate", "tied_with_best")
            ),
            *avg_labels,
        ]
        body = [
            [
                r["method"],
                row_label(r),
                "ours",
                r["config"],
                r["percent"],
                r["head"],
                *(
                    x
                    for c in cols
                    for x in (
                        (
                            r["cells"][c].mean,
                            r["cells"][c].std,
                            int(r["cells"][c].n),
                            " ".join(f"{v:.4f}" for v in getattr(r["cells"][c], "values", [])),
                            int(getattr(r["cells"][c], "degenerate", 0)),
                            _verdict_text(t["verdicts"].get(c, {}).get(i)),
                        )
                        if c in r["cells"]
                        else (None, None, None, None, None, None)
                    )
                ),
                *(r["avgs"][g] for g in groups),
            ]
            for i, r in enumerate(rows)
        ]
        body += [
            [
                p["method"],
                p["label"],
                "published",
                "",
                _published_percent(p["param"]),
                None,
                *(x for c in cols for x in (p["cells"][c], None, None, None, None, None)),
                *(p["avgs"][g] for g in groups),
            ]
            for p in published
        ]
        text = [
            ["" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v) for v in r] for r in body
        ]
        return render(header, text, fmt, caption, json_rows=[dict(zip(header, r, strict=True)) for r in body])
    header = ["Method", "%Param", "Head", *cols, *avg_labels]
    bold, marked = set(), False

    ours_in = {c: any(c in r["cells"] for r in rows) for c in cols} | {
        g: any(r["avgs"][g] is not None for r in rows) for g in groups
    }

    def cell(value, best, key, sd=None, n=1, ours=True, suffix=""):
        """(text, bold): bold = the best of our rows (of the published ones where we have no value)."""
        nonlocal marked
        if value is None:
            return "-", False
        text = f"{value:.1f}" + (f" ± {sd:.1f}" if n > 1 else "") + suffix
        if best is None:
            return text, False
        if not ours and ours_in[key] and value > best + 1e-9:
            marked = True
            return text + " †", False
        return text, (ours or not ours_in[key]) and bool(np.isclose(value, best))

    plain = []
    used = set()

    def suffix(i: int, c: str) -> str:
        marks = ""
        verdict = t["verdicts"].get(c, {}).get(i)
        if verdict is not None and verdict.tied is None:
            marks += " ?"
        elif verdict is not None and verdict.tied:
            marks += " ≈"
        if getattr(rows[i]["cells"][c], "degenerate", 0):
            marks += " ‡"
        used.update(m for m in ("?", "≈", "‡") if m in marks)
        return marks

    for i, r in enumerate(rows):
        line = [row_label(r), percent_text(r["percent"]), f"{r['head']:,.0f}"]
        values = [
            (r["cells"][c].mean, t["best"][c], c, r["cells"][c].std, r["cells"][c].n, True, suffix(i, c))
            if c in r["cells"]
            else (None, None, c)
            for c in cols
        ] + [(r["avgs"][g], t["best_avg"][g], g) for g in groups]
        for j, v in enumerate(values, start=3):
            text, is_best = cell(*v)
            line.append(text)
            if is_best:
                bold.add((i, j))
        plain.append(line)
    rule = len(plain) if published and plain else None
    for pub in published:
        i = len(plain)
        line = [f"{pub['label']} (published)", pub["param"].replace("%", ""), "-"]
        values = [(pub["cells"][c], t["best"][c], c) for c in cols] + [
            (pub["avgs"][g], t["best_avg"][g], g) for g in groups
        ]
        for j, (v, b, key) in enumerate(values, start=3):
            text, is_best = cell(v, b, key, ours=False)
            line.append(text)
            if is_best:
                bold.add((i, j))
        plain.append(line)
    if marked:
        caption += " †: a published value above our best in that column."
    caption += marks_caption(used)
    label = f"tab:{t['model'].rstrip('/').split('/')[-1]}-{t['layout'].name if t['layout'] else 'results'}"
    return render(
        header,
        plain,
        fmt,
        caption,
        align="lrr" + "c" * (len(cols) + len(groups)),
        bold=bold,
        italic_rows=set(range(len(rows), len(plain))),
        rule_before=rule,
        label=label,
    )


def _verdict_text(verdict) -> str | None:
    if verdict is None:
        return None
    return "cannot tell" if verdict.tied is None else "yes" if verdict.tied else "no"


def marks_caption(used: set) -> str:
    """What the significance and degenerate marks in a table mean (only those that appear)."""
    text = ""
    if "≈" in used:
        text += (
            f" ≈: not significantly below the column's best (Welch's t-test over seeds, two-sided, "
            f"Holm-Bonferroni corrected over the column's comparisons, alpha {ALPHA})."
        )
    if "?" in used:
        text += f" ?: fewer than {MIN_SEEDS} seeds here or in the best row: the test cannot tell."
    if "‡" in used:
        text += (
            " ‡: at least one seed is flagged degenerate (its dev predictions collapsed to one class, or it "
            "is no better than the trivial baseline); see the runs' `degenerate` tag."
        )
    return text


def _published_percent(param: str) -> float | None:
    """A published %Param as a number (a range like "0.015%-0.022%": its upper end)."""
    try:
        return float(param.replace("%", "").split("-")[-1])
    except ValueError:
        return None


def _avg_caption(groups: dict) -> str:
    if not groups:
        return ""
    return (
        " ".join(
            f"{average_label(g, groups)}: mean over the {g} tasks, each task once (MNLI m/mm as their mean)."
            for g in groups
        )
        + " "
    )


def results_report(
    tracking_uri: str | None,
    model: str,
    tasks: list[str] | None,
    methods: list[str] | None,
    fmt: str,
    published: bool = False,
    all_runs: bool = False,
    standalone: bool = False,
    layout_name: str | None = None,
    stats: bool = False,
    exclude_degenerate: bool = False,
) -> str:
    """`bench report table`: the results table of tracked runs (sweeps' final seeds, or every run); with
    --published or --layout, a paper table's columns and its published rows (alone if the store has no
    runs of the model)."""
    layout = get_layout(layout_name, model) if (published or layout_name) else None
    try:
        df = load_runs(tracking_uri, phase=None if all_runs else FINAL)
    except BenchError:
        if layout is None:
            raise
        df = pd.DataFrame()
    excluded = 0
    if exclude_degenerate and not df.empty:
        mask = degenerate_mask(df)
        excluded, df = int(mask.sum()), df[~mask]
    agg = (
        aggregate(df, layout.report_columns() if layout else None, by_config=all_runs)
        if not df.empty
        else pd.DataFrame()
    )
    t = build(agg, model, tasks, methods, layout, stats=stats)
    studies = (
        {s for x in t["sel"].get("studies", []) for s in x.split(",") if s} if not t["sel"].empty else set()
    )
    budgets = sweep_budgets(load_runs(tracking_uri, phase=None), studies) if studies else {}
    budget = (
        f"Sweep budgets: {'; '.join(sorted(set(budgets.values())))}."
        if budgets
        else "Runs not from sweeps (no search budget)."
        if t["rows"]
        else f"No runs of {model} in the store: published rows only."
    )
    if exclude_degenerate:
        budget += f" Degenerate runs left out: {excluded} (of every model and task in the store)."
    shown = t["sel"]
    if "training" in shown and not shown.empty:
        seen: dict[str, set] = {}
        for m, x in zip(shown["method"], shown["training"], strict=True):
            if x:
                seen.setdefault(display_name(m), set()).add(x)
        by_method = {m: xs.pop() if len(xs) == 1 else "varies between its rows" for m, xs in seen.items()}
        if len(set(by_method.values())) == 1:
            budget = f"Training: {next(iter(by_method.values()))}. " + budget
        elif by_method:
            budget = (
                "Training: " + "; ".join(f"{m}: {x}" for m, x in sorted(by_method.items())) + ". " + budget
            )
    repeats = int(shown["repeats"].sum()) if "repeats" in shown else 0
    other = int(shown["other_data"].sum()) if "other_data" in shown else 0
    if repeats or other:
        budget += (
            f" Each (configuration, seed) counted once: {repeats} repeated runs left out (the latest counts)"
            + (f", and {other} runs on other data than the latest run's" if other else "")
            + "."
        )
    older = int(shown["older_studies"].sum()) if "older_studies" in shown else 0
    if older:
        budget += (
            f" A method's final runs come from its latest sweep: {older} older sweep(s) of the same method, "
            "model and task left out."
        )
    out = render_results(t, fmt, budget)
    return standalone_latex(out) if fmt == "latex" and standalone else out
