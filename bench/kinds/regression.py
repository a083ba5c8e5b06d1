"""Sentence-pair regression (STS-B): one output, MSE loss, Pearson and Spearman correlation."""

from __future__ import annotations

import math

import numpy as np

from bench.errors import BenchError
from bench.kinds import register
from bench.kinds.base import TaskKind


@register
class Regression(TaskKind):
    name = "regression"
    head_reads_first_token = True  # AutoModelForSequenceClassification with one output
    float_labels = True

    def head_kwargs(self, task) -> dict:
        return {"num_labels": 1, "problem_type": "regression"}

    def label_index(self, task, value: str, where: str):
        try:
            score = float(value)
        except ValueError:
            raise BenchError(f"{where}: score {value!r} is not a number") from None
        low, high = task.score_range or (-math.inf, math.inf)
        if not (math.isfinite(score) and low <= score <= high):
            raise BenchError(f"{where}: score {value!r} is outside {task.name}'s range [{low:g}, {high:g}]")
        return score

    def hub_labels(self, column) -> list:
        return [float(x) for x in column]

    def format_prediction(self, task, prediction) -> str:
        return f"{prediction:.4f}"

    def predictions(self, logits, lengths, indices) -> list:
        return logits.squeeze(-1).tolist()

    def metrics(self, task, predictions, labels) -> dict[str, float]:
        from scipy.stats import pearsonr, spearmanr  # lazy: `bench tasks` loads the kinds

        p, y = np.asarray(predictions, dtype=float), np.asarray(labels, dtype=float)
        if p.std() == 0 or y.std() == 0:  # constant predictions: correlation undefined, scored as 0
            return {"pearson": 0.0, "spearman": 0.0}
        return {"pearson": float(pearsonr(p, y)[0]), "spearman": float(spearmanr(p, y)[0])}

    def collapse(self, task, predictions) -> str | None:
        """A near-constant prediction (spread under 1% of the scale): the mean-score predictor."""
        p = np.asarray(predictions, dtype=float)
        spread, scale = float(p.std()), max(float(np.abs(p).mean()), 1e-12)
        return (
            f"dev predictions are nearly constant (std {spread:.2g} around {p.mean():.3g})"
            if spread < 0.01 * scale
            else None
        )

    def trivial_predictions(self, task, train_labels, dev_labels) -> list:
        return [float(np.mean(train_labels))] * len(dev_labels)  # a constant: correlation 0
