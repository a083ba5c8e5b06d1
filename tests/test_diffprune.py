"""Diff pruning through the interface's hooks: the L0 loss term, the gates' own parameter group, the
projection step hook; the final nonzero count equals the target; the checkpoint reloads exactly."""

import math

import pytest
import torch

from bench.build import build_model
from bench.checkpoint import download_run_checkpoint
from bench.cli import main
from bench.reload import evaluate_checkpoint
from bench.resolve import build_config
from bench.tasks import get_task
from methods.diffprune import DiffGate, gates, nonzero_diff, project, projection_step

from support import all_runs


def built(tiny_models, glue_dir, **options):
    cfg = build_config(
        {
            "method": "diffprune",
            "model": tiny_models["bert"],
            "task": "rte",
            "data_dir": str(glue_dir),
            "method_options": options,
        }
    )
    return build_model(cfg, get_task("rte"))


def test_gate_is_the_hard_concrete_of_louizos():
    g = DiffGate((1000,), alpha_init=math.log(2), structured=False)
    g.eval()  # deterministic: clamp(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1) = 2/3 * 3 - 1.5
    assert torch.allclose(g.z(), torch.full((1000,), 0.5))
    g.train()
    z = g.z()
    assert ((z == 0) | (z == 1)).float().mean() > 0.2 and ((z > 0) & (z < 1)).any()  # exact zeros and ones
    # P(z != 0) = sigmoid(log_alpha - beta * log(-gamma / zeta)); the shift is 0 for the symmetric interval
    assert g.expected_l0().item() == pytest.approx(1000 * 2 / 3)


def test_hooks_groups_loss_and_projection(tiny_models, glue_dir):
    b = built(tiny_models, glue_dir, sparsity=0.02, alpha_lr=0.05, l0_weight=1e-3)
    m, cfg, model = b.method, b.method_config, b.model
    backbone = sum(g.diff.numel() for g in gates(model))
    assert backbone == b.backbone_numel  # one diff entry per pretrained entry (embeddings included)
    groups = m.param_groups(model, cfg, weight_decay=0.01)
    alpha = [g for g in groups if g.get("lr") == 0.05]
    assert len(alpha) == 1 and sum(p.numel() for p in alpha[0]["params"]) == backbone
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)

    total = 10
    assert projection_step(cfg, total) == 5
    term = m.loss_term(model, cfg, 0, total)
    assert term.item() > 0 and term.requires_grad
    with torch.no_grad():
        for g in gates(model):
            g.diff.normal_()
    for step in range(1, total + 1):
        m.after_step(model, cfg, step, total)
        if step == 5:
            assert nonzero_diff(model) == math.ceil(0.02 * backbone)
    assert m.loss_term(model, cfg, 5, total) is None  # the mask is fixed after projection
    assert all(not g.log_alpha.requires_grad for g in gates(model))
    # The fixed mask holds in training mode too: sampled gates are exactly 0 or 1.
    model.train()
    for g in gates(model):
        z = g.z()
        assert torch.equal(z, (g.log_alpha > 0).float())
    assert m.counts_after_training(model, cfg)["method"] == math.ceil(0.02 * backbone)


def test_projection_keeps_exactly_k_under_ties(tiny_models, glue_dir):
    b = built(tiny_models, glue_dir)
    with torch.no_grad():
        for g in gates(b.model):
            g.diff.fill_(1.0)  # every entry ties
    k = project(b.model, 0.01)
    assert nonzero_diff(b.model) == k == math.ceil(0.01 * b.backbone_numel)


def test_cli_run_reports_nonzero_count_and_reloads_exactly(tiny_models, glue_dir, tmp_path, tracking_uri):
    assert (
        main(
            [
                "run",
                "--method",
                "diffprune",
                "--model",
                tiny_models["bert"],
                "--task",
                "rte",
                "--data-dir",
                str(glue_dir),
                "--max-steps",
                "6",
                "--batch-size",
                "4",
                "--lr",
                "1e-2",
                "--set",
                "eval_every_steps=1",
                "--set",
                "method.sparsity=0.05",
                "--set",
                "method.project_at=0.5",
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
    backbone = run.data.metrics["params_backbone"]
    assert run.data.metrics["params_method"] == math.ceil(
        0.05 * backbone
    )  # the latest value: after projection
    assert run.data.metrics["params_diff_nonzero"] == math.ceil(0.05 * backbone)
    from mlflow.tracking import MlflowClient

    history = MlflowClient(tracking_uri).get_metric_history(run.info.run_id, "params_method")
    assert [h.value for h in sorted(history, key=lambda h: h.step)][0] == 2 * backbone  # diff + gate logits
    # Only evaluations after the projection could be chosen: the saved model is the sparse one.
    directory = download_run_checkpoint(run.info.run_id, tracking_uri, tmp_path / "dl")
    result = evaluate_checkpoint(directory, echo=lambda *a: None)
    for split, metrics in result["metrics"].items():
        for name, value in metrics.items():
            assert value == run.data.metrics[f"best_{split}_{name}"], (split, name)
