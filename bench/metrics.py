"""Task metrics from scikit-learn, scipy and seqeval, with GLUE's conventions."""

from __future__ import annotations

import numpy as np

from bench.encoding import IGNORE_INDEX
from bench.tasks import REGRESSION, TAGGING, Task


def compute_metrics(task: Task, predictions, labels) -> dict[str, float]:
    """predictions: class indices, scores (regression), or per-token indices aligned with labels
    (tagging; positions labelled IGNORE_INDEX are dropped). Returns every metric of the task plus
    `glue_score` (the mean of the task's GLUE metrics: MRPC/QQP F1+acc, STS-B Pearson+Spearman)."""
    if task.kind == TAGGING:
        out = _tagging(task, predictions, labels)
    elif task.kind == REGRESSION:
        from scipy.stats import pearsonr, spearmanr

        p, y = np.asarray(predictions, dtype=float), np.asarray(labels, dtype=float)
        if p.std() == 0 or y.std() == 0:  # constant predictions: correlation undefined, scored as 0
            out = {"pearson": 0.0, "spearman": 0.0}
        else:
            out = {"pearson": float(pearsonr(p, y)[0]), "spearman": float(spearmanr(p, y)[0])}
    else:
        from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

        p, y = np.asarray(predictions), np.asarray(labels)
        out = {"accuracy": float(accuracy_score(y, p))}
        if "f1" in task.metrics:
            out["f1"] = float(f1_score(y, p, pos_label=1, average="binary"))
        if "mcc" in task.metrics:
            out["mcc"] = float(matthews_corrcoef(y, p))
    out["glue_score"] = float(np.mean([out[m] for m in task.glue_score]))
    return out


def _tagging(task: Task, predictions, labels) -> dict[str, float]:
    from seqeval.metrics import accuracy_score, classification_report

    y_true, y_pred = [], []
    for pred_row, label_row in zip(predictions, labels, strict=True):
        keep = [(p, t) for p, t in zip(pred_row, label_row, strict=False) if t != IGNORE_INDEX]
        y_true.append([task.labels[t] for _, t in keep])
        y_pred.append([task.labels[p] for p, _ in keep])
    # Default (conlleval-compatible) mode: an I-X after O opens an entity, as in the CoNLL scorer.
    report = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    micro = report["micro avg"]
    out = {"precision": micro["precision"], "recall": micro["recall"], "f1": micro["f1-score"],
           "accuracy": accuracy_score(y_true, y_pred)}
    for etype in sorted({lab[2:] for lab in task.labels if lab != "O"}):
        out[f"f1_{etype}"] = report.get(etype, {}).get("f1-score", 0.0)
    return {k: float(v) for k, v in out.items()}


def trivial_baseline(task: Task, train_labels, dev_labels) -> dict[str, float]:
    """The score of always predicting the training majority (mean for regression; all-O for NER)."""
    if task.kind == TAGGING:
        return compute_metrics(task, [[0] * len(r) for r in dev_labels], dev_labels)
    if task.kind == REGRESSION:
        return {"pearson": 0.0, "spearman": 0.0, "glue_score": 0.0}
    majority = int(np.bincount(np.asarray(train_labels)).argmax())
    return compute_metrics(task, [majority] * len(dev_labels), dev_labels)
