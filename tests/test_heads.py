"""The task head as an explicit option: the family's HF head or one linear layer on the first token's state;
counted apart from the method, trained, saved and reloaded exactly."""

import pytest
import torch

from bench.build import build_model, prepare_data
from bench.param_table import meta_counts
from bench.resolve import build_config
from bench.tasks import get_task
from bench.train import batch_for


@pytest.mark.parametrize("family", ["bert", pytest.param("roberta", marks=pytest.mark.slow)])
def test_linear_head_is_one_linear_layer_on_the_first_token(tiny_models, glue_dir, family):
    task = get_task("rte")
    cfg = build_config(
        {
            "method": "pasta",
            "model": tiny_models[family],
            "task": "rte",
            "data_dir": str(glue_dir),
            "head": "linear",
        }
    )
    b = build_model(cfg, task)
    H, C = b.model.config.hidden_size, task.num_labels
    head = {n: p for n, p in b.model.named_parameters() if n.startswith("classifier.")}
    assert sum(p.numel() for p in head.values()) == H * C + C and all(p.requires_grad for p in head.values())
    assert not any("pooler" in n for n, _ in b.model.named_parameters())  # BERT's pooler is not used
    # Independent computation: logits = W h_[first token] + b, with h from the encoder (dropout off).
    prep = prepare_data(cfg, task, b)
    batch = batch_for(prep, prep.dev["dev"], [0, 1, 2], torch.device("cpu"))
    batch.pop("labels")
    b.model.eval()
    with torch.no_grad():
        logits = b.model(**batch).logits
        hidden = b.model.base_model(**batch).last_hidden_state[:, 0]
        weight, bias = [p for n, p in sorted(head.items(), key=lambda kv: kv[0].endswith("bias"))]
        assert torch.allclose(logits, hidden @ weight.T + bias, atol=1e-6)


def test_family_head_counts_beside_the_method():
    roberta = meta_counts("roberta-large", get_task("rte"), "pasta")
    assert roberta["head"] == 1024 * 1024 + 1024 + 1024 * 2 + 2 == 1_051_650  # RobertaClassificationHead
    assert meta_counts("roberta-large", get_task("rte"), "pasta", head="linear")["head"] == 1024 * 2 + 2
    bert = meta_counts("bert-large-cased", get_task("rte"), "pasta", head="linear")
    assert bert["head"] == 2050 and bert["backbone"] == 333_579_264 - (1024 * 1024 + 1024)  # no pooler


def test_bad_head_is_one_line():
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="unknown head 'mlp'"):
        build_config({"head": "mlp"})


def test_linear_head_run_reloads_exactly(tiny_models, glue_dir, tmp_path, tracking_uri):
    from bench.checkpoint import download_run_checkpoint
    from bench.cli import main
    from bench.reload import evaluate_checkpoint

    from support import all_runs

    assert (
        main(
            [
                "run",
                "--method",
                "pasta",
                "--model",
                tiny_models["roberta"],
                "--task",
                "rte",
                "--data-dir",
                str(glue_dir),
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--set",
                "head=linear",
                "--output-dir",
                str(tmp_path / "out"),
                "--tracking-uri",
                tracking_uri,
                "--no-progress",
            ]
        )
        == 0
    )
    (run,) = all_runs(tracking_uri)
    assert run.data.params["head"] == "linear" and run.data.metrics["params_head"] == 32 * 2 + 2
    result = evaluate_checkpoint(
        download_run_checkpoint(run.info.run_id, tracking_uri, tmp_path / "dl"), echo=lambda *a: None
    )
    assert result["metrics"]["dev"]["accuracy"] == run.data.metrics["best_dev_accuracy"]
