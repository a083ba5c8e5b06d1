"""Reading tracked runs back: MLflow search_runs into pandas, aggregated over seeds."""

from __future__ import annotations

import pandas as pd

from bench.errors import BenchError

# (column label, task, metric logged as best_<metric>): the papers' column order (LoRA Table 2) + CoNLL.
COLUMNS = [("MNLI-m", "mnli", "dev_matched_accuracy"), ("MNLI-mm", "mnli", "dev_mismatched_accuracy"),
           ("SST-2", "sst2", "dev_glue_score"), ("MRPC", "mrpc", "dev_glue_score"), ("CoLA", "cola", "dev_glue_score"),
           ("QNLI", "qnli", "dev_glue_score"), ("QQP", "qqp", "dev_glue_score"), ("RTE", "rte", "dev_glue_score"),
           ("STS-B", "stsb", "dev_glue_score"), ("CoNLL03", "conll2003", "dev_f1")]


def load_runs(tracking_uri: str | None = None, phase: str | None = "final") -> pd.DataFrame:
    """FINISHED runs of every experiment; only `phase` runs (sweeps' final seeds) unless phase is None."""
    import mlflow

    from bench import tracking

    uri = tracking.resolve_uri(tracking_uri)
    tracking.check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    where = "attributes.status = 'FINISHED'" + (f" and tags.phase = '{phase}'" if phase else "")
    df = mlflow.search_runs(search_all_experiments=True, filter_string=where)
    if df.empty:
        raise BenchError(f"no FINISHED{' ' + phase if phase else ''} runs in {tracking.redact(uri)}"
                         + (" (final runs come from `bench sweep finalize`; --all-runs uses every run)" if phase == "final"
                            else " (they come from `bench intrinsic`)" if phase == "intrinsic" else ""))
    return df


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, method, column): mean, sample std and n over seeds, ×100, plus %Param."""
    rows = []
    for label, task, metric in COLUMNS:
        col = f"metrics.best_{metric}"
        if col not in df:
            continue
        sub = df[(df["tags.task"] == task) & df[col].notna()]
        for (model, method), g in sub.groupby(["tags.model", "tags.method"]):
            values = 100 * g[col].astype(float)
            rows.append({"model": model, "method": method, "column": label, "task": task,
                         "mean": values.mean(), "std": values.std(ddof=1) if len(values) > 1 else 0.0,
                         "n": len(values), "seeds": ",".join(sorted(g["tags.seed"].astype(str))),
                         "params_method": float(g["metrics.params_method"].iloc[0]),
                         "params_backbone": float(g["metrics.params_backbone"].iloc[0]),
                         "studies": ",".join(sorted(g.get("tags.study", pd.Series(dtype=str)).dropna().unique()))})
    return pd.DataFrame(rows)


def sweep_budgets(df_all: pd.DataFrame, studies: set[str]) -> dict[str, str]:
    """study -> its trial budget, from the parent runs' params."""
    if "tags.phase" not in df_all or "tags.study" not in df_all:
        return {}
    parents = df_all[(df_all["tags.phase"] == "study") & df_all["tags.study"].isin(studies)]
    return {r["tags.study"]: str(r.get("params.budget.trials", "?")) for _, r in parents.iterrows()}
