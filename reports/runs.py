"""Reading tracked runs back: MLflow search_runs into pandas, aggregated over seeds."""

from __future__ import annotations

import pandas as pd

from bench.config import FIELDS, NOT_TRAINING
from bench.record import STUDY, count_metric
from bench.tasks import all_tasks
from bench.tracking import load_runs  # noqa: F401 - load_runs is part of this API
from methods import display_name


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
            g, older = (g, 0) if by_config else latest_study(g)
            g, repeats, other_data = one_per_seed(g)
            values = 100 * g[col].astype(float)
            knob = ""
            value = g.get("tags.knob_value", pd.Series(["-"])).iloc[0]
            if (
                by_config
                and g.get("tags.knob", pd.Series(["-"])).iloc[0] not in ("-", None)
                and value
                not in (
                    "-",
                    "None",
                    None,
                )
            ):  # a knob left at None (PASTA's last_k: the `layers` option decides) names nothing
                knob = f"{g['tags.knob'].iloc[0]}={value}"
            rows.append(
                {
                    "model": model,
                    "method": method,
                    "config": key[2] if by_config else "",
                    "knob": knob,
                    "settings": settings(g) if by_config else {},
                    "column": label,
                    "task": task,
                    "group": group,
                    "mean": values.mean(),
                    "std": values.std(ddof=1) if len(values) > 1 else 0.0,
                    "n": len(values),
                    "seeds": ",".join(sorted(g["tags.seed"].astype(str))),
                    "values": values.tolist(),  # per seed, in the runs' order: significance tests read them
                    "degenerate": int(degenerate_mask(g).sum()),
                    "params_method": float(g[f"metrics.{count_metric('method')}"].iloc[0]),
                    "params_backbone": float(g[f"metrics.{count_metric('backbone')}"].iloc[0]),
                    "params_head": float(g[f"metrics.{count_metric('head')}"].iloc[0]),
                    "studies": ",".join(sorted(g.get("tags.study", pd.Series(dtype=str)).dropna().unique())),
                    "repeats": repeats,
                    "other_data": other_data,
                    "older_studies": older,
                    "training": training_budget(g),
                }
            )
    if by_config:
        label_by_what_varies(rows)
    return pd.DataFrame(rows)


# A run's training settings as logged (params.<field>, params.method_config.<option>): what can tell two
# configurations of one method apart. Bookkeeping, identity and the seed are left out.
SETTING_FIELDS = set(FIELDS) - set(NOT_TRAINING) - {"seed", "tags", "data_dir", "method", "model", "task"}


def settings(g: pd.DataFrame) -> dict:
    last = g.iloc[-1]
    out = {}
    for column in g.columns:
        name = column.removeprefix("params.")
        if column.startswith("params.") and (name in SETTING_FIELDS or name.startswith("method_config.")):
            out[name.replace("method_config.", "method.")] = last[column]
    return out


def label_by_what_varies(rows: list[dict]) -> None:
    """With one row per configuration, each row is labelled by the settings that differ between its method's
    configurations (lr=0.00068, method.layers=last:4), not by a knob the runs may not have varied."""
    by_method: dict[tuple, list[dict]] = {}
    for r in rows:
        by_method.setdefault((r["model"], r["method"]), []).append(r)
    for group in by_method.values():
        keys = sorted({k for r in group for k in r["settings"]})
        varied = [k for k in keys if len({str(r["settings"].get(k)) for r in group}) > 1]
        for r in group:
            if varied:
                r["knob"] = ", ".join(f"{k}={_short(r['settings'].get(k))}" for k in varied)
            r.pop("settings")


def _short(value) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.3g}" if not number.is_integer() else str(int(number))


def training_budget(g: pd.DataFrame) -> str:
    """What a configuration trained on, from its logged params: "2 epochs of the first 1,000 training
    examples, batch 32" (or "N steps")."""
    last = g.iloc[-1]

    def param(name):
        value = last.get(f"params.{name}")
        return None if value is None or pd.isna(value) or value in ("None", "") else value

    steps, epochs, cut, batch = (param(k) for k in ("max_steps", "epochs", "max_train_samples", "batch_size"))
    if steps is None and epochs is None:
        return ""
    length = (
        f"{int(float(steps))} steps"
        if steps
        else f"{float(epochs):g} epoch" + ("" if float(epochs) == 1 else "s")
    )
    data = f"the first {int(float(cut)):,} training examples" if cut else "the full training split"
    return f"{length} of {data}" + (f", batch {batch}" if batch else "")


def one_per_seed(g: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    """One run per (configuration, seed) on one dataset: a seed run twice (a sweep trial that a final run
    repeats, two finalize commands at once) counts once, the latest; runs on other data than the latest run's
    (tag data_digest: the splits' content) are left out. Returns (runs, repeats dropped, other-data
    dropped)."""
    if "end_time" in g:
        g = g.sort_values("end_time")
    other = 0
    if "tags.data_digest" in g and g["tags.data_digest"].nunique() > 1:
        latest = g["tags.data_digest"].dropna().iloc[-1]
        keep = g["tags.data_digest"].isna() | (g["tags.data_digest"] == latest)  # runs logged before the tag
        other, g = int((~keep).sum()), g[keep]
    kept = g.drop_duplicates(["tags.config_hash", "tags.seed"], keep="last")
    return kept, len(g) - len(kept), other


def latest_study(g: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """A method's final runs come from one sweep: with several studies of the same method, model and task
    (a sweep run again with other settings), the one whose final runs ended last; averaging the best
    configurations of different sweeps as if they were seeds would mix configurations. Returns (runs,
    studies left out)."""
    if "tags.study" not in g or g["tags.study"].nunique() < 2:
        return g, 0
    ended = g.groupby("tags.study")["end_time"].max() if "end_time" in g else g.groupby("tags.study").size()
    latest = ended.idxmax()
    return g[g["tags.study"] == latest], g["tags.study"].nunique() - 1


def degenerate_mask(df: pd.DataFrame) -> pd.Series:
    """Runs flagged degenerate (tag `degenerate`: majority, no-better-than-trivial; bench/degenerate.py)."""
    if "tags.degenerate" not in df:
        return pd.Series(False, index=df.index)
    return df["tags.degenerate"].fillna("").astype(str) != ""


def sweep_budgets(df_all: pd.DataFrame, studies: set[str]) -> dict[str, str]:
    """study -> what its search was given and used, from its parent run: "LoRA: 8 trials, 412 s" (and the
    compute budget, when it had one), so that a reader sees every method had the same."""
    if "tags.phase" not in df_all or "tags.study" not in df_all:
        return {}
    parents = df_all[(df_all["tags.phase"] == STUDY) & df_all["tags.study"].isin(studies)]
    out = {}
    for _, r in parents.iterrows():
        text = f"{display_name(str(r.get('tags.method', '?')))}: {r.get('params.budget.trials', '?')} trials"
        seconds = r.get("params.budget.seconds")
        if isinstance(seconds, str) and seconds not in ("", "None"):
            text += f" or {float(seconds):g} s"
        spent = r.get("metrics.seconds_spent")
        flops = r.get("metrics.flops_spent")
        used = []
        if spent is not None and not pd.isna(spent):
            used.append(f"{float(spent):,.0f} s")
        if flops is not None and not pd.isna(flops) and flops > 0:
            used.append(f"{float(flops) / 1e15:.3g} PFLOP est.")
        if used:
            text += f" ({', '.join(used)} of trials used)"
        out[r["tags.study"]] = text
    return out
