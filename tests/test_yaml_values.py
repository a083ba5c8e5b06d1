"""Every value YAML can spell is read as the user means it: YAML 1.2 numbers and booleans everywhere bench
reads YAML (--set, --config, search spaces, task entries)."""

import pytest

from bench.config import parse_set
from bench.resolve import build_config
from bench.yamlio import load
from sweeps.space import validate_space


@pytest.mark.parametrize(
    "text, value",
    [
        ("1e-3", 1e-3),
        ("3E-4", 3e-4),
        ("-2e5", -2e5),
        ("1.5e-5", 1.5e-5),
        ("10", 10),
        ("no", "no"),
        ("yes", "yes"),
        ("on", "on"),
        ("true", True),
        ("False", False),
        ("null", None),
        ("'1e-3'", "1e-3"),
    ],
)
def test_scalars(text, value):
    assert load(f"x: {text}")["x"] == value


def test_set_and_config_numbers_in_any_notation():
    cfg = build_config(parse_set(["lr=1e-4", "warmup_ratio=6e-2", "max_steps=1e2"]))
    assert (cfg.lr, cfg.warmup_ratio, cfg.max_steps) == (1e-4, 0.06, 100)


def test_search_space_bounds_in_exponent_notation_are_numbers():
    validate_space(load("lr: {type: float, low: 1e-5, high: 1e-3, log: true}"), "full")
