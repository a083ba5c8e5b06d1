"""The statistics behind fair comparisons, against independent computations: the expected maximum of k
trials against a brute-force enumeration of every draw, Holm's correction against its definition, the
significance verdicts on samples whose answer is known, and the degenerate-run flags of each kind."""

import itertools

import numpy as np
import pytest
from scipy import stats as sps

from bench import degenerate
from bench.tasks import get_task
from reports.stats import MIN_SEEDS, against_best, expected_max, holm


@pytest.mark.parametrize("values", [[0.5], [1.0, 2.0], [3.0, 1.0, 2.0, 2.0], [0.61, 0.72, 0.55, 0.70, 0.68]])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_expected_max_equals_the_mean_over_every_draw(values, k):
    # every ordered draw of k trials with replacement is equally likely: average the maximum over all of them
    draws = [max(d) for d in itertools.product(values, repeat=k)]
    mean, std = expected_max(values, k)
    assert mean == pytest.approx(np.mean(draws), abs=1e-12)
    assert std == pytest.approx(np.std(draws), abs=1e-12)


def test_expected_max_limits():
    v = [0.2, 0.9, 0.4]
    assert expected_max(v, 1)[0] == pytest.approx(np.mean(v))  # one trial: the mean trial
    assert expected_max(v, 500)[0] == pytest.approx(0.9, abs=1e-6)  # many: the best trial
    means = [expected_max(v, k)[0] for k in range(1, 20)]
    assert all(b >= a for a, b in zip(means, means[1:], strict=False))  # never falls with more trials
    with pytest.raises(ValueError):
        expected_max([], 1)


def test_holm_matches_its_definition():
    p = [0.01, 0.04, 0.03, 0.2]
    # sorted: 0.01*4=0.04, 0.03*3=0.09, 0.04*2=0.08 -> max(0.09, 0.08)=0.09, 0.2*1=0.2
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_clearly_different_samples_are_told_apart_and_equal_ones_tied():
    rng = np.random.default_rng(0)
    best = (80 + rng.normal(0, 0.3, 5)).tolist()
    same = (80 + rng.normal(0, 0.3, 5)).tolist()
    worse = (70 + rng.normal(0, 0.3, 5)).tolist()
    v = against_best({"best": best, "same": same, "worse": worse})
    top = max(v, key=lambda k: np.mean({"best": best, "same": same, "worse": worse}[k]))
    assert v[top].tied and v[top].p is None
    assert v["worse"].tied is False and v["worse"].p < 0.05
    other = "same" if top == "best" else "best"
    assert v[other].tied is True
    # the p-value is scipy's Welch test, Holm-corrected over the two comparisons
    raw = [
        sps.ttest_ind(v_, {"best": best, "same": same}[top], equal_var=False).pvalue
        for v_ in ({"best": best, "same": same}[other], worse)
    ]
    assert v[other].p == pytest.approx(holm(raw)[0])


def test_too_few_seeds_cannot_tell():
    v = against_best({"a": [80.0, 81.0], "b": [70.0, 71.0, 72.0]})
    assert v["b"] == v["b"].__class__(None, None)  # the best has 2 seeds: no verdict for anyone ...
    assert v["a"].tied is None  # ... itself included
    v = against_best({"a": [80.0, 81.0, 82.0], "b": [70.0] * (MIN_SEEDS - 1)})
    assert v["b"].tied is None


@pytest.mark.parametrize(
    "task_name, predictions, best, baseline, expected",
    [
        ("rte", [1] * 96 + [0] * 4, {"accuracy": 0.53}, {"accuracy": 0.527}, {"majority"}),
        ("rte", [1] * 60 + [0] * 40, {"accuracy": 0.527}, {"accuracy": 0.527}, {"no-better-than-trivial"}),
        ("rte", [1] * 100, {"accuracy": 0.527}, {"accuracy": 0.527}, {"majority", "no-better-than-trivial"}),
        ("rte", [1] * 60 + [0] * 40, {"accuracy": 0.66}, {"accuracy": 0.527}, set()),
        ("stsb", [2.5001, 2.5, 2.4999] * 10, {"glue_score": 0.1}, {"glue_score": 0.0}, {"majority"}),
        ("stsb", [0.5, 2.5, 4.0] * 10, {"glue_score": 0.8}, {"glue_score": 0.0}, set()),
        ("cola", [0, 1] * 50, {"mcc": 0.0}, {"mcc": 0.0}, {"no-better-than-trivial"}),  # MCC 0 described
    ],
)
def test_degenerate_flags(task_name, predictions, best, baseline, expected):
    task = get_task(task_name)
    best = {task.main_metric: next(iter(best.values()))}
    baseline = {task.main_metric: next(iter(baseline.values()))}
    found = degenerate.flags(task, predictions, best, baseline)
    assert set(found) == expected
    assert degenerate.tag_value(found) == ",".join(k for k in degenerate.KINDS if k in expected)
