import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from sklearn.metrics import accuracy_score, matthews_corrcoef
from sklearn.metrics import f1_score as sk_f1

from bench.data import iob1_to_bio
from bench.encoding import IGNORE_INDEX
from bench.metrics import compute_metrics, trivial_baseline
from bench.tasks import get_task

Y = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1]
P = [1, 0, 0, 1, 1, 1, 0, 1, 1, 0]


def test_classification_metrics_equal_sklearn():
    m = compute_metrics(get_task("mrpc"), P, Y)
    assert m["accuracy"] == pytest.approx(accuracy_score(Y, P))
    assert m["f1"] == pytest.approx(sk_f1(Y, P))
    assert m["glue_score"] == pytest.approx((accuracy_score(Y, P) + sk_f1(Y, P)) / 2)
    c = compute_metrics(get_task("cola"), P, Y)
    assert c["mcc"] == pytest.approx(matthews_corrcoef(Y, P))
    assert c["glue_score"] == c["mcc"]


def test_regression_metrics_equal_scipy():
    y = [0.0, 1.2, 3.3, 4.8, 2.5, 5.0]
    p = [0.3, 1.0, 2.9, 4.1, 3.1, 4.4]
    m = compute_metrics(get_task("stsb"), p, y)
    assert m["pearson"] == pytest.approx(pearsonr(p, y)[0])
    assert m["spearman"] == pytest.approx(spearmanr(p, y)[0])
    assert m["glue_score"] == pytest.approx((m["pearson"] + m["spearman"]) / 2)


def test_constant_regression_prediction_scores_zero_not_nan():
    m = compute_metrics(get_task("stsb"), [2.0] * 4, [0.0, 1.0, 2.0, 3.0])
    assert m["pearson"] == 0.0 and not np.isnan(m["glue_score"])


def test_iob1_to_bio():
    assert iob1_to_bio(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "I-ORG", "I-MISC"]) == [
        "B-PER",
        "I-PER",
        "O",
        "B-LOC",
        "B-LOC",
        "I-LOC",
        "B-ORG",
        "B-MISC",
    ]


def test_tagging_metrics_equal_seqeval_on_iob1_input():
    task = get_task("conll2003")
    gold_iob1 = [["I-PER", "I-PER", "O", "I-LOC", "B-LOC"], ["O", "I-ORG", "I-ORG", "O", "I-MISC"]]
    pred_bio = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["O", "B-ORG", "O", "O", "B-MISC"]]
    gold_bio = [iob1_to_bio(s) for s in gold_iob1]
    idx = {t: i for i, t in enumerate(task.labels)}
    # Ignored positions (later sub-tokens, specials) must not count.
    labels = [[IGNORE_INDEX] + [idx[t] for t in s] + [IGNORE_INDEX] for s in gold_bio]
    preds = [[0] + [idx[t] for t in s] + [3] for s in pred_bio]
    m = compute_metrics(task, preds, labels)
    assert m["f1"] == pytest.approx(f1_score(gold_bio, pred_bio))
    assert m["precision"] == pytest.approx(precision_score(gold_bio, pred_bio))
    assert m["recall"] == pytest.approx(recall_score(gold_bio, pred_bio))
    report = classification_report(gold_bio, pred_bio, output_dict=True)
    for etype in ("PER", "LOC", "ORG", "MISC"):
        assert m[f"f1_{etype}"] == pytest.approx(report[etype]["f1-score"])
    # The conversion keeps every IOB1 entity (the conlleval reading), and strict BIO scoring agrees.
    from seqeval.metrics.sequence_labeling import get_entities
    from seqeval.scheme import IOB2

    assert get_entities(gold_iob1) == get_entities(gold_bio)
    assert f1_score(gold_bio, pred_bio, mode="strict", scheme=IOB2) == pytest.approx(m["f1"])


def test_trivial_baseline_is_majority_class():
    task = get_task("rte")
    base = trivial_baseline(task, [0, 0, 1], [0, 1, 1, 1])
    assert base["accuracy"] == 0.25
