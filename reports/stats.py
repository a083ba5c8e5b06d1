"""Statistics for comparing methods fairly: the expected best score of k tuning trials (Dodge et al. 2019,
"Show Your Work", arXiv 1909.03004) and which methods a few seeds cannot tell apart from the best one
(Welch's t-test, Holm-Bonferroni corrected)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
MIN_SEEDS = 3  # with fewer seeds per method a t-test says nothing useful: the report says it cannot tell


def expected_max(values, k: int) -> tuple[float, float]:
    """Mean and standard deviation of the best of k trials drawn (with replacement, as Dodge et al.) from the
    trials run: with the n values sorted v_1 <= ... <= v_n, P(max = v_i) = (i/n)^k - ((i-1)/n)^k."""
    v = np.sort(np.asarray(values, dtype=float))
    n = len(v)
    if n == 0 or k < 1:
        raise ValueError("expected_max needs at least one value and k >= 1")
    i = np.arange(1, n + 1)
    weights = (i / n) ** k - ((i - 1) / n) ** k
    mean = float(weights @ v)
    return mean, float(np.sqrt(max(0.0, weights @ (v - mean) ** 2)))


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1). Written here because scipy offers
    only Benjamini-Hochberg (false_discovery_control) and statsmodels is not a dependency for one function."""
    m = len(pvalues)
    order = np.argsort(pvalues)
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[idx]))
        adjusted[idx] = running
    return adjusted.tolist()


@dataclass(frozen=True)
class Verdict:
    """A method against the best one in a column: `tied` True (not significantly worse), False (worse), or
    None (fewer than MIN_SEEDS seeds on either side: cannot tell); p is the Holm-adjusted p-value."""

    tied: bool | None
    p: float | None


def flat(x: np.ndarray) -> bool:
    """No spread beyond float noise (scores of identical predictions, rescaled, differ in the last bit)."""
    return bool(np.ptp(x) <= 1e-9 * max(1.0, float(np.abs(x).max())))


def against_best(samples: dict, alpha: float = ALPHA) -> dict:
    """{key: per-seed scores} -> {key: Verdict} for every key but the best (highest mean), which gets
    Verdict(True, None) (every key gets Verdict(None, None) when the best has fewer than MIN_SEEDS seeds).
    Welch's t-test (unequal variances) of each against the best, two-sided, the p-values Holm-corrected
    over the column's comparisons."""
    # lazy: scipy.stats takes seconds to import, and only tables asked for --stats test anything
    from scipy import stats

    if not samples:
        return {}
    best = max(samples, key=lambda k: np.mean(samples[k]))
    out = {best: Verdict(True, None)}
    testable = [k for k in samples if k != best and len(samples[k]) >= MIN_SEEDS]
    for k in samples:
        if k != best and k not in testable:
            out[k] = Verdict(None, None)
    if len(samples[best]) < MIN_SEEDS:  # nothing is tested: the best row cannot be said to tie either
        return {k: Verdict(None, None) for k in samples}
    raw = []
    for k in testable:
        a, b = np.asarray(samples[k], float), np.asarray(samples[best], float)
        if flat(a) and flat(b):  # no spread on either side: equal means tie, else they differ
            raw.append(1.0 if np.isclose(a.mean(), b.mean()) else 0.0)
        else:
            with warnings.catch_warnings():  # scipy's "precision loss" note on a side with no spread
                warnings.simplefilter("ignore", RuntimeWarning)
                raw.append(float(stats.ttest_ind(a, b, equal_var=False).pvalue))
    for k, p in zip(testable, holm(raw), strict=True):
        out[k] = Verdict(p >= alpha, p)
    return out
