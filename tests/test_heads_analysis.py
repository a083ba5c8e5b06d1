"""`bench heads`: the scoring rule on hand-made attention, the analysis end to end from the CLI (files,
MLflow),
head masking for the ablation, and the comparison of two analyses."""

import json

import pytest
import torch

from bench.cli import main
from reports.heads import HeadScores, input_scores, set_head_mask

from support import all_runs


def test_scoring_rule_on_hand_made_attention():
    T = 6
    special = torch.tensor([True, False, False, False, False, True])  # [CLS] a b c d [SEP]
    att = torch.zeros(1, 3, T, T)
    att[0, 0, :, 0] = 1.0  # head 0: every query looks at [CLS]
    att[0, 1] = torch.eye(T)  # head 1: every query looks at itself
    att[0, 2, :, 2] = 1.0  # head 2: everyone looks at token "b"
    v, d = input_scores(
        att, special, count_special_queries=False, definition="special-tokens"
    )  # queries a..d
    assert v[0].tolist() == [1.0, 0.0, 0.0]
    assert d[0].tolist() == [0.25, 1.0, 0.75]  # head 0: only "a" is next to [CLS]; head 2: a, b, c near "b"
    scores = HeadScores(v[None], d[None], threshold=0.9, count_special_queries=False)
    assert scores.kinds()[0].tolist() == ["vertical", "diagonal", "heterogeneous"]
    v_all, _ = input_scores(att, special, count_special_queries=True, definition="special-tokens")
    assert v_all[0, 0] == 1.0 and v_all[0, 1] == pytest.approx(2 / 6)  # the specials' own queries now count


def reference_is_vertical(single_head, cutoff=0.9):
    """luka-group/PASTA plot_attentions.py is_vertical, transcribed: every query row counts; a hit is an
    argmax on the first or the last key."""
    count = sum(
        int(single_head[i].argmax()) in (0, single_head.shape[1] - 1) for i in range(single_head.shape[0])
    )
    return count >= single_head.shape[0] * cutoff


def test_the_default_definition_is_the_reference_scripts():
    """A pair input [CLS] a [SEP] b [SEP]: a head looking at the middle [SEP] is vertical for bench's
    special-tokens variant but not for the reference, which counts only the first and last positions, and
    every query row (special ones included)."""
    T = 5
    special = torch.tensor([True, False, True, False, True])
    gen = torch.Generator().manual_seed(0)
    att = torch.rand(2, 4, T, T, generator=gen)
    att[0, 0, :, 2] = 9.0  # the middle [SEP]
    att[0, 1, :, 0] = 9.0  # [CLS]
    att[0, 2, :, 4] = 9.0  # the last [SEP]
    att[0, 3, :4, 0] = 9.0  # 4 of 5 rows on [CLS]: 0.8 < 0.9
    v, _ = input_scores(att, special, count_special_queries=False)
    kinds = HeadScores(v[None], v[None] * 0, threshold=0.9, count_special_queries=False).kinds()
    for layer in range(2):
        for head in range(4):
            assert (kinds[layer, head] == "vertical") == reference_is_vertical(att[layer, head].numpy())
    assert kinds[0].tolist()[:3] == ["heterogeneous", "vertical", "vertical"]
    v_var, _ = input_scores(att, special, count_special_queries=False, definition="special-tokens")
    assert v_var[0, 0] == 1.0  # the variant counts the middle [SEP]


def model_and_batch(tiny_models, glue_dir, method, options=None):
    """A tiny BERT with `method` attached, in eval mode, and four dev inputs."""
    from bench.build import build_model, prepare_data
    from bench.resolve import build_config
    from bench.tasks import get_task
    from bench.train import batch_for

    cfg = build_config(
        {
            "method": method,
            "model": tiny_models["bert"],
            "task": "rte",
            "data_dir": str(glue_dir),
            "method_options": options or {},
        }
    )
    built = build_model(cfg, get_task("rte"))
    prep = prepare_data(cfg, get_task("rte"), built)
    batch = batch_for(prep, prep.dev["dev"], list(range(4)), torch.device("cpu"))
    batch.pop("labels")
    return built.model.eval(), batch


def test_masking_heads(tiny_models, glue_dir):
    model, batch = model_and_batch(tiny_models, glue_dir, "pasta")
    with torch.no_grad():
        normal = model(**batch).logits
        set_head_mask(model, set())
        assert torch.allclose(model(**batch).logits, normal, atol=1e-5)  # masking nothing changes nothing
        set_head_mask(model, {(0, 0)})
        one = model(**batch).logits
        set_head_mask(model, {(layer, head) for layer in range(2) for head in range(2)})
        assert not torch.allclose(one, normal, atol=1e-6) and not torch.allclose(
            model(**batch).logits, one, atol=1e-6
        )


@pytest.mark.slow
def test_heads_cli_end_to_end(tiny_models, glue_dir, tmp_path, tracking_uri, capsys):
    out = tmp_path / "heads"
    assert (
        main(
            [
                "heads",
                "--model",
                tiny_models["bert"],
                "--task",
                "rte",
                "--data-dir",
                str(glue_dir),
                "--samples",
                "5",
                "--out-dir",
                str(out),
                "--tracking-uri",
                tracking_uri,
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| layer | vertical | diagonal | heterogeneous |" in printed
    (run,) = [r for r in all_runs(tracking_uri) if r.data.tags.get("phase") == "heads"]
    assert sum(run.data.metrics[f"heads_{k}"] for k in ("vertical", "diagonal", "heterogeneous")) == 2 * 2
    stem = out / "heads-tiny-bert-rte-pretrained"
    for ext in ("csv", "json", "png", "pdf"):
        assert stem.with_suffix(f".{ext}").is_file()
    data = json.loads(stem.with_suffix(".json").read_text())
    assert data["inputs"] == 5 and len(data["heads"]) == 4 and data["count_special_queries"] is False
    # A tuned model (any method), ablated, compared with the pretrained analysis.
    assert (
        main(
            [
                "run",
                "--method",
                "lora",
                "--model",
                tiny_models["bert"],
                "--task",
                "rte",
                "--data-dir",
                str(glue_dir),
                "--max-steps",
                "2",
                "--batch-size",
                "4",
                "--output-dir",
                str(tmp_path / "o"),
                "--tracking-uri",
                tracking_uri,
                "--no-progress",
            ]
        )
        == 0
    )
    (tuned,) = [r for r in all_runs(tracking_uri) if r.data.tags.get("phase") == "single"]
    capsys.readouterr()
    assert (
        main(
            [
                "heads",
                "--run",
                tuned.info.run_id,
                "--samples",
                "5",
                "--out-dir",
                str(out),
                "--ablate",
                "vertical",
                "--draws",
                "2",
                "--threshold",
                "0.3",
                "--tracking-uri",
                tracking_uri,
            ]
        )
        == 0
    )
    assert "ablation on dev_accuracy" in capsys.readouterr().out
    assert (
        main(["report", "heads", str(stem.with_suffix(".json")), str(out / "heads-tiny-bert-rte-lora.json")])
        == 0
    )
    assert "Heads by kind in each analysis" in capsys.readouterr().out


def test_heads_bad_input(tiny_models, glue_dir, tmp_path, tracking_uri, capsys):
    assert (
        main(
            [
                "heads",
                "--model",
                tiny_models["bert"],
                "--task",
                "rte",
                "--data-dir",
                str(glue_dir),
                "--ablate",
                "vertical",
                "--tracking-uri",
                tracking_uri,
            ]
        )
        == 2
    )
    assert "--ablate needs a tuned model" in capsys.readouterr().err
    assert main(["heads", "--model", tiny_models["bert"], "--task", "rte", "--threshold", "1.5"]) == 2
    assert "--threshold 1.5" in capsys.readouterr().err


def test_ptuning_models_keep_their_prefix(tiny_models, glue_dir):
    """P-tuning v2 under the eager and the head-masked attention gives its own logits (prefix kept), and its
    attention weights cover the input tokens."""
    from reports.heads import use_eager_attention

    model, batch = model_and_batch(tiny_models, glue_dir, "ptuning", {"prefix_length": 3, "init_std": 1.0})
    with torch.no_grad():
        normal = model(**batch).logits
        use_eager_attention(model)
        out = model(**batch, output_attentions=True)
        assert torch.allclose(out.logits, normal, atol=1e-5)
        assert out.attentions[0].shape[-1] == batch["input_ids"].shape[1]
        set_head_mask(model, set())
        assert torch.allclose(model(**batch).logits, normal, atol=1e-5)


@pytest.mark.parametrize("family", ["bert", "roberta", "deberta-v2", "electra", "modernbert", "xlm-roberta"])
def test_heads_are_scored_on_every_family(tiny_models, glue_dir, family):
    """Eager attention is forced (sdpa returns no weights): every family yields a (inputs, layers, heads)
    score
    whose rows are shares in [0, 1]."""
    from bench.build import build_model, prepare_data
    from bench.resolve import build_config
    from bench.tasks import get_task
    from reports.heads import score_heads

    cfg = build_config(
        {"method": "head", "model": tiny_models[family], "task": "rte", "data_dir": str(glue_dir)}
    )
    built = build_model(cfg, get_task("rte"))
    prep = prepare_data(cfg, get_task("rte"), built, train=False)
    scores = score_heads(built.model, prep.dev["dev"], 3, 0.9)
    assert scores.vertical.shape == (3, 2, 2)
    assert ((scores.vertical >= 0) & (scores.vertical <= 1)).all() and scores.vertical.sum() > 0


@pytest.mark.slow
def test_heads_states_modernbert_local_attention(tiny_models, glue_dir, tmp_path, capsys, tracking_uri):
    assert (
        main(
            [
                "heads",
                "--model",
                tiny_models["modernbert"],
                "--task",
                "rte",
                "--data-dir",
                str(glue_dir),
                "--samples",
                "2",
                "--out-dir",
                str(tmp_path),
                "--tracking-uri",
                tracking_uri,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "1 of its 2 layers" in out and "cannot see [CLS] or [SEP]" in out
    data = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert "within +-4 tokens" in data["local_attention"]
