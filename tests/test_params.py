"""`bench params` reproduces docs/methods.md's published figures from architectures alone (meta device)."""

import pytest

from bench.cli import main
from bench.param_table import meta_counts, published_rows
from bench.tasks import get_task


@pytest.fixture(scope="module")
def published():
    return {(r["name"], r["model"], r["config"]): r for r in published_rows()}


@pytest.mark.parametrize(
    "method, model, config, count, pct",
    [
        ("pasta", "bert-large-cased", "M=2 (single sentence), vectors only", 49_152, "0.0147"),
        ("pasta", "bert-large-cased", "M=3 (sentence pair), vectors only", 73_728, "0.0221"),
        ("pasta", "roberta-large", "M=2 (single sentence)", 49_152, "0.0139"),
        ("pasta", "roberta-large", "M=4 (pair: <s> a </s></s> b </s>)", 98_304, "0.0277"),
        ("bitfit", "bert-large-cased", "all biases + LayerNorm betas + pooler bias", 272_384, "0.0817"),
        ("bitfit", "roberta-base", "all biases + LayerNorm betas (no pooler)", 102_144, None),
        ("ptuning", "bert-large-cased", "p=20", 983_040, "0.2947"),
        ("lora", "bert-large-cased", "r=8 on W_q, W_v", 786_432, "0.2358"),
        ("lora", "roberta-large", "r=8 on W_q, W_v", 786_432, None),
        ("lora", "roberta-base", "r=8 on W_q, W_v", 294_912, None),
        ("adapter", "bert-large-cased", "m=64, adapters only", 6_343_680, "1.9017"),
    ],
)
def test_published_figures(published, method, model, config, count, pct):
    row = published[(method, model, config)]
    assert row["method"] == count
    if pct:
        assert f"{row['percent']:.4f}" == pct


def test_denominators_are_the_backbones_as_loaded():
    assert meta_counts("bert-large-cased", get_task("rte"), "full")["backbone"] == 333_579_264  # with pooler
    assert meta_counts("roberta-large", get_task("rte"), "full")["backbone"] == 354_310_144  # no pooler
    assert (
        meta_counts("bert-large-cased", get_task("conll2003"), "full")["backbone"]
        == 333_579_264 - 1024 * 1025
    )


def test_adapter_with_layernorms_matches_formula():
    L, H, m = 24, 1024, 64
    c = meta_counts("bert-large-cased", get_task("rte"), "adapter", {"size": m})
    assert c["method"] == 2 * L * (2 * H * m + m + H) + 4 * L * H + 2 * H


@pytest.mark.slow
def test_cli_formats(capsys):
    assert (
        main(
            [
                "params",
                "--model",
                "roberta-base",
                "--task",
                "sst2",
                "--methods",
                "lora,pasta",
                "--format",
                "latex",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert r"\toprule" in out and "294,912" in out and "18,432" in out
    assert main(["params", "--published", "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "| PASTA | roberta-large | 0.029% | 0.029 | 98,304 | 0.0277 |" in out
    assert "| LoRA | roberta-large | 0.8M | 0.226 | 786,432 | 0.222 |" in out  # 0.8M of 354,310,144: one unit
    assert "no single m gives it" in out and "98,304 / 335M = 0.029%" in out  # no note cut mid-sentence
    assert main(["params", "--model", "bert-huge"]) == 2
    assert "unknown model 'bert-huge'" in capsys.readouterr().err


def test_diff_pruning_reports_its_budget_as_percent_param():
    """%Param is the count Diff pruning ends with (its 0.5% sparsity budget over the gated entries), not the
    dense diff and gates it trains (200%), which the trainable column keeps."""
    import math

    from bench.param_table import meta_counts
    from bench.tasks import get_task

    c = meta_counts("bert-large-cased", get_task("rte"), "diffprune")
    backbone = 333_579_264  # bert-large-cased with its pooler (every entry gated, embeddings included)
    assert c["backbone"] == backbone and c["method"] == math.ceil(0.005 * backbone)
    assert c["method_training"] == 2 * backbone and c["trainable"] == 2 * backbone + 2 * 1024 + 2
