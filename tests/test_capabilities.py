"""The capability matrix: the shipped docs/capabilities.md matches a fresh probe, and the probe can tell a
refusal, a failure and a method no gradient reaches from a working one."""

from pathlib import Path

import pytest
import torch

from bench import capabilities
from bench.capabilities import FAILS, REFUSED, WORKS, matrix, parse, probe, render
from bench.tasks import get_task
from methods import REGISTRY
from methods.base import Method

SHIPPED = Path(__file__).resolve().parents[1] / "docs" / "capabilities.md"
HAND_WRITTEN = [n for n, m in REGISTRY.items() if not m.peft_tuner]
TUNER_SAMPLE = ["adalora", "ia3", "ln_tuning", "vera", "c3a", "oft"]


@pytest.mark.slow
def test_shipped_matrix_matches_a_fresh_probe():
    shipped = parse(SHIPPED.read_text())
    fresh = {(c.method, c.family, c.kind): c.outcome for c in matrix(HAND_WRITTEN + TUNER_SAMPLE)}
    assert fresh == {k: v for k, v in shipped.items() if k[0] in HAND_WRITTEN + TUNER_SAMPLE}
    assert {m for m, _, _ in shipped} == set(REGISTRY)  # every registered method has a row


def test_known_cells():
    """Refusals the families define (BitFit: ModernBERT has no biases), and a tuner that works on tagging."""
    cell = probe("bitfit", "modernbert", get_task("conll2003"))
    assert cell.outcome == REFUSED and "no bias terms" in cell.reason
    assert probe("ia3", "modernbert", get_task("conll2003")).outcome == WORKS
    cell = probe("ptuning", "deberta-v2", get_task("rte"))
    assert cell.outcome == REFUSED and "disentangled attention" in cell.reason


class Frozen(Method):  # attaches nothing and unfreezes nothing: no gradient reaches any parameter
    name = "frozen-probe"
    trains_head = False
    config_cls = type("NoOptions", (), {})

    def make_config(self, options):
        return None

    def attach(self, model, cfg, ctx):
        return model


class Broken(Frozen):  # attaching fails with an unexpected error
    name = "broken-probe"

    def attach(self, model, cfg, ctx):
        raise RuntimeError("shape mismatch in layer 3")


class Detached(Frozen):  # a trained vector the forward never reads
    name = "detached-probe"

    def attach(self, model, cfg, ctx):
        model.unused = torch.nn.Parameter(torch.zeros(3))
        return model


@pytest.mark.parametrize(
    "cls, outcome, words",
    [
        (Broken, FAILS, "RuntimeError: shape mismatch in layer 3"),
        (Detached, FAILS, "no gradient reaches"),
    ],
)
def test_the_probe_names_failures(monkeypatch, cls, outcome, words):
    monkeypatch.setitem(REGISTRY, cls.name, cls())
    cell = probe(cls.name, "bert", get_task("rte"))
    assert cell.outcome == outcome and words in cell.reason


def test_render_and_parse_round_trip():
    cells = [
        capabilities.Cell("a", "bert", "classification", WORKS),
        capabilities.Cell("a", "bert", "tagging", REFUSED, "a: no tags"),
        capabilities.Cell("b", "bert", "classification", FAILS, "ValueError: x"),
        capabilities.Cell("b", "bert", "tagging", REFUSED, "b: no tags"),
    ]
    text = render(cells, "")
    assert parse(text) == {(c.method, c.family, c.kind): c.outcome for c in cells}
    assert "[1] refused: a: no tags" in text and "[2] fails: ValueError: x" in text
