"""Runs that learned nothing, said as such: a run whose dev predictions collapsed onto one answer
(`majority`), whose score does not beat the trivial baseline (`no-better-than-trivial`), or whose loss
became NaN or infinite (`diverged`, a FAILED run). The flag describes a run and never hides it: tiny
models legitimately score CoLA MCC 0. Reports mark such runs and can leave them out when asked."""

from __future__ import annotations

MAJORITY, TRIVIAL, DIVERGED = "majority", "no-better-than-trivial", "diverged"
KINDS = (MAJORITY, TRIVIAL, DIVERGED)
TAG = "degenerate"  # the MLflow tag: the kinds that apply, comma-separated


def flags(task, predictions, best: dict, baseline: dict) -> dict[str, str]:
    """{kind: why} for a finished run: `predictions` of its first dev split at the best evaluation, `best`
    and `baseline` that split's metrics (the run's, the trivial predictor's)."""
    out = {}
    collapsed = task.task_kind.collapse(task, predictions)
    if collapsed:
        out[MAJORITY] = collapsed
    metric = task.main_metric
    if metric in best and metric in baseline and best[metric] <= baseline[metric] + 1e-9:
        out[TRIVIAL] = f"{metric} {best[metric]:.4f}, the trivial baseline's {baseline[metric]:.4f}"
    return out


def tag_value(found: dict) -> str:
    return ",".join(k for k in KINDS if k in found)
