"""One look for every figure bench draws: display labels for methods, tasks and metrics, a distinct
marker and a colour-blind-safe colour per method (Okabe & Ito's palette, readable in greyscale through
the markers), error bars stated as ±1 sample std over n seeds, and y-ranges fitted to the data."""

from __future__ import annotations

import numpy as np

from bench.tasks import get_task
from methods import REGISTRY, display_name, has_role

# Okabe & Ito (2008), the palette colour-vision-deficiency guides recommend; black is kept for anchors, and
# yellow comes last (it is faint on white).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#999999", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h", "<", ">")


def percent_text(value: float) -> str:
    """%Param as every table prints it: three significant digits, never an exponent (0.0222, 1.5, 100)."""
    return np.format_float_positional(value, precision=3, unique=False, fractional=False, trim="-")


def method_style(method: str) -> dict:
    """matplotlib keywords of a method's line: the same marker and colour in every figure (by its place in
    the registry, so that a method keeps its look whichever others are drawn beside it)."""
    if has_role(method, "reference"):
        return {"color": "black", "marker": "*", "markersize": 12, "label": display_name(method)}
    if has_role(method, "anchor"):
        return {"color": "black", "marker": "s", "markersize": 7, "label": display_name(method)}
    others = [m for m in REGISTRY if not (has_role(m, "reference") or has_role(m, "anchor"))]
    i = others.index(method) if method in others else len(others) + sum(map(ord, method))
    return {
        "color": PALETTE[i % len(PALETTE)],
        "marker": MARKERS[i % len(MARKERS)],
        "markersize": 6,
        "label": display_name(method),
    }


def metric_label(metric: str, task: str | None = None) -> str:
    """ "dev_accuracy" -> "dev accuracy", "dev_glue_score" -> "dev GLUE score"; with a task: "MRPC dev
    accuracy"."""
    words = metric.replace("glue_score", "GLUE score").replace("_", " ")
    if task:
        words = f"{get_task(task).title} {words}"
    return words


def spread_note(seeds: list[int] | int) -> str:
    n = seeds if isinstance(seeds, int) else len(set(seeds))
    return f"error bars: ±1 sample std over {n} seeds" if n > 1 else "one seed: no error bars"


def fit_ylim(
    ax, values: list[float], errors: list[float] | None = None, pad: float = 0.08
) -> tuple[float, float]:
    """A y-range fitted to the data (means ± their error bars), not stretched by reference lines; returns
    it."""
    v = np.asarray(values, dtype=float)
    e = np.zeros_like(v) if errors is None else np.asarray(errors, dtype=float)
    lo, hi = float(np.nanmin(v - e)), float(np.nanmax(v + e))
    span = hi - lo or abs(hi) * 0.1 or 1.0
    ax.set_ylim(lo - pad * span, hi + pad * span)
    return ax.get_ylim()


def reference_line(ax, y: float, label: str, **kw) -> None:
    """A horizontal reference line, drawn where it falls inside the fitted y-range; outside it, only said in
    the legend (with its value and which side), so that it never squeezes the data."""
    lo, hi = ax.get_ylim()
    if lo <= y <= hi:
        ax.axhline(y, lw=1, label=f"{label} ({y:.3g})", **kw)
    else:
        ax.plot(
            [], [], lw=1, label=f"{label} ({y:.3g}, {'below' if y < lo else 'above'} the range shown)", **kw
        )
