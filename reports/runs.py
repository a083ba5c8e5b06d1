"""Reading tracked runs back: MLflow search_runs into pandas, aggregated over seeds."""

from __future__ import annotations

import pandas as pd

from bench.record import STUDY, count_metric
from bench.tasks import all_tasks
from bench.tracking import load_runs  # noqa: F401 - load_runs is part of this API


def report_columns() -> list[tuple[str, str, str, str]]:
    """(column label, task, logged metric, score group) in the papers' column order, from the task entries."""
    return [
        (label, t.name, metric, t.report_group)
        for t in all_tasks().values()
        for label, metric in t.report_columns.items()
    ]


def aggregate(df: pd.DataFrame, columns: list | None = None, by_config: bool = False) -> pd.DataFrame:
    """One row per (model, method, column): mean, sample std and n over seeds, ×100, plus %Param and the
    head's size. `columns`: (label, task, logged metric, group); default: the task entries' report columns,
    whose metrics are read at the best evaluation (best_<split>_<metric>). by_config: one row per training
    configuration (tag config_hash) instead, so that different trials are never averaged as if seeds."""
    if columns is None:
        columns = [(label, task, f"best_{metric}", group) for label, task, metric, group in report_columns()]
    rows = []
    for label, task, metric, group in columns:
        col = f"metrics.{metric}"
        if col not in df:
            continue
        sub = df[(df["tags.task"] == task) & df[col].notna()]
        keys = ["tags.model", "tags.method"] + (["tags.config_hash"] if by_config else [])
        for key, g in sub.groupby(keys):
            model, method = key[0], key[1]
            values = 100 * g[col].astype(float)
            knob = ""
            if by_config and g.get("tags.knob", pd.Series(["-"])).iloc[0] not in ("-", None):
                knob = f"{g['tags.knob'].iloc[0]}={g['tags.knob_value'].iloc[0]}"
            rows.append(
                {
                    "model": model,
                    "method": method,
                    "config": key[2] if by_config else "",
                    "knob": knob,
                    "column": label,
                    "task": task,
                    "group": group,
                    "mean": values.mean(),
                    "std": values.std(ddof=1) if len(values) > 1 else 0.0,
                    "n": len(values),
                    "seeds": ",".join(sorted(g["tags.seed"].astype(str))),
                    "params_method": float(g[f"metrics.{count_metric('method')}"].iloc[0]),
                    "params_backbone": float(g[f"metrics.{count_metric('backbone')}"].iloc[0]),
                    "params_head": float(g[f"metrics.{count_metric('head')}"].iloc[0]),
                    "studies": ",".join(sorted(g.get("tags.study", pd.Series(dtype=str)).dropna().unique())),
                }
            )
    return pd.DataFrame(rows)


def sweep_budgets(df_all: pd.DataFrame, studies: set[str]) -> dict[str, str]:
    """study -> its trial budget, from the parent runs' params."""
    if "tags.phase" not in df_all or "tags.study" not in df_all:
        return {}
    parents = df_all[(df_all["tags.phase"] == STUDY) & df_all["tags.study"].isin(studies)]
    return {r["tags.study"]: str(r.get("params.budget.trials", "?")) for _, r in parents.iterrows()}
