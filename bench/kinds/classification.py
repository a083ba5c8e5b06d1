"""Sequence classification (single sentences or pairs): accuracy, F1 of class 1, Matthews corr."""

from __future__ import annotations

import numpy as np

from bench.kinds import register
from bench.kinds.base import TaskKind


@register
class Classification(TaskKind):
    name = "classification"
    head_reads_first_token = True  # AutoModelForSequenceClassification

    def metrics(self, task, predictions, labels) -> dict[str, float]:
        from sklearn.metrics import (  # lazy: `bench tasks` loads the kinds
            accuracy_score,
            f1_score,
            matthews_corrcoef,
        )

        p, y = np.asarray(predictions), np.asarray(labels)
        out = {"accuracy": float(accuracy_score(y, p))}
        if "f1" in task.metrics:
            out["f1"] = float(f1_score(y, p, pos_label=1, average="binary"))
        if "mcc" in task.metrics:
            out["mcc"] = float(matthews_corrcoef(y, p))
        return out
