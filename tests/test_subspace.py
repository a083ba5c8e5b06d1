"""SAID/DID: the FWHT against a dense Hadamard matrix (values and gradient), exactly d trainable parameters,
gradients only into theta_d (and SAID's scales), and a checkpoint that reloads exactly from the seed."""

import math

import pytest
import torch

from bench.cli import main
from bench.config import build_config
from bench.params import count_parameters
from bench.runner import build_model, download_run_checkpoint, evaluate_checkpoint, prepare_data
from bench.tasks import get_task
from bench.train import batch_for
from methods.subspace import Fastfood, fwht

from conftest import all_runs


def hadamard(n):
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


@pytest.mark.parametrize("n", [1, 2, 8, 64, 2048, 1 << 13])  # block sizes 2..16 and a partial last block
def test_fwht_is_the_dense_hadamard_product_gradient_included(n):
    x = torch.randn(3, n, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, n, dtype=torch.float64)
    (fwht(x) * g).sum().backward()
    assert torch.allclose(fwht(x.detach()), x.detach() @ hadamard(n).double())
    assert torch.allclose(x.grad, g @ hadamard(n).double())  # H is symmetric: the gradient is H g, unscaled


def test_fastfood_is_near_orthonormal_and_pads_without_cropping():
    P = Fastfood(d=40, numel=30, seed=0, device=torch.device("cpu"))  # d > D: n = 64, nothing cropped
    cols = torch.stack([P(torch.eye(40)[i]) for i in range(40)], 1)  # (30, 40)
    assert P.n == 64 and cols.shape == (30, 40)
    big = Fastfood(d=8, numel=4096, seed=1, device=torch.device("cpu"))
    norms = torch.stack([big(torch.eye(8)[i]) for i in range(8)]).norm(dim=1)
    assert torch.allclose(norms, torch.ones(8), atol=0.1)  # scaled by 1/sqrt(n * sum G^2)
    x = torch.randn(8)
    assert torch.equal(big(x), big(x))  # signs and diagonal redrawn from the seed: the same transform every time


@pytest.mark.parametrize("method", ["said", "did"])
def test_exactly_d_trained_and_gradients_only_there(tiny_models, glue_dir, method):
    d = 500
    cfg = build_config({"method": method, "model": tiny_models["bert"], "task": "rte", "data_dir": str(glue_dir),
                        "method_options": {"d": d}})
    b = build_model(cfg, get_task("rte"))
    counts = count_parameters(b.model, b.backbone_numel, b.stored_names)
    assert counts["trainable"] == counts["method"] == d  # head in the projected set: d counts everything
    trainable = {n for n, p in b.model.named_parameters() if p.requires_grad}
    assert trainable == ({"subspace.theta", "subspace.scales"} if method == "said" else {"subspace.theta"})
    prep = prepare_data(cfg, get_task("rte"), b)
    batch = batch_for(prep, prep.train, list(range(4)), torch.device("cpu"))
    before = b.model(**batch).logits.detach()
    b.model.eval()
    b.model(**batch).loss.backward()
    assert all(p.grad is None for n, p in b.model.named_parameters() if n not in trainable)
    assert b.model.subspace.theta.grad.abs().sum() > 0
    with torch.no_grad():
        b.model.subspace.theta.add_(0.5)
    assert not torch.allclose(b.model(**batch).logits, before)  # theta_d moves every tensor


def test_bad_d_is_one_line(tiny_models, glue_dir, tmp_path, tracking_uri, capsys):
    base = ["run", "--model", tiny_models["bert"], "--task", "rte", "--data-dir", str(glue_dir), "--max-steps", "1",
            "--tracking-uri", tracking_uri, "--output-dir", str(tmp_path)]
    for argv, message in (([*base, "--method", "did", "--set", "method.d=0"], "d 0 must be at least 1"),
                          ([*base, "--method", "did", "--set", "method.d=10000000"], "exceeds the"),
                          ([*base, "--method", "said", "--set", "method.d=5"], "must exceed the")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert not (tmp_path / "mlflow.db").exists() or all_runs(tracking_uri) == []


def test_save_and_reload_exact(tiny_models, glue_dir, tmp_path, tracking_uri):
    assert main(["run", "--method", "said", "--model", tiny_models["bert"], "--task", "rte", "--data-dir",
                 str(glue_dir), "--max-steps", "3", "--batch-size", "4", "--lr", "5e-2", "--set", "method.d=300",
                 "--output-dir", str(tmp_path / "out"), "--tracking-uri", tracking_uri, "--no-progress"]) == 0
    (run,) = all_runs(tracking_uri)
    assert run.data.metrics["params_method"] == 300
    # Projection state: an int32 permutation per padded element; over 4 bytes per parameter only by the padding.
    assert 4 <= run.data.metrics["params_projection_bytes_per_param"] < 8
    result = evaluate_checkpoint(download_run_checkpoint(run.info.run_id, tracking_uri, tmp_path / "dl"),
                                 echo=lambda *a: None)
    assert result["metrics"]["dev"]["accuracy"] == run.data.metrics["best_dev_accuracy"]
    (adapter,) = (tmp_path / "out").glob("*/adapter")
    from safetensors.torch import load_file

    stored = load_file(str(adapter / "adapter.safetensors"))
    assert "subspace.theta" in stored and not any("perm" in k or "gauss" in k for k in stored)
    assert math.isfinite(run.data.metrics["best_dev_accuracy"])
