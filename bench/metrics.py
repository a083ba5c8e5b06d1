"""Task metrics with GLUE's conventions: each task kind computes its own (bench/kinds), and every
task adds `glue_score`, the mean of its score metrics (MRPC/QQP F1+accuracy, STS-B Pearson+Spearman)."""

from __future__ import annotations

import numpy as np


def compute_metrics(task, predictions, labels) -> dict[str, float]:
    """predictions: what the task kind's `predictions` returns (class ids, scores, per-token ids aligned
    with labels; positions labelled IGNORE_INDEX are dropped)."""
    out = task.task_kind.metrics(task, predictions, labels)
    out["glue_score"] = float(np.mean([out[m] for m in task.score]))
    return out


def trivial_baseline(task, train_labels, dev_labels) -> dict[str, float]:
    """The score of the trivial predictor: the training majority class, the mean score (correlation 0)
    or all-O tags."""
    return compute_metrics(
        task, task.task_kind.trivial_predictions(task, train_labels, dev_labels), dev_labels
    )
