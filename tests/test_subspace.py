"""SAID/DID: the FWHT against a dense Hadamard matrix (values and gradient), exactly d trainable parameters,
gradients only into theta_d (and SAID's scales), and a checkpoint that reloads exactly from the seed."""

import math

import pytest
import torch

from bench.build import build_model, prepare_data
from bench.checkpoint import download_run_checkpoint
from bench.cli import main
from bench.params import count_parameters
from bench.reload import evaluate_checkpoint
from bench.resolve import build_config
from bench.tasks import get_task
from bench.train import batch_for
from methods.subspace import Fastfood, fwht

from support import all_runs


def hadamard(n):
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


@pytest.mark.parametrize(
    "n", [1, 2, 8, 64, 2048, pytest.param(1 << 13, marks=pytest.mark.slow)]
)  # block sizes 2..16 and a partial last block
def test_fwht_is_the_dense_hadamard_product_gradient_included(n):
    x = torch.randn(3, n, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, n, dtype=torch.float64)
    (fwht(x) * g).sum().backward()
    assert torch.allclose(fwht(x.detach()), x.detach() @ hadamard(n).double())
    assert torch.allclose(x.grad, g @ hadamard(n).double())  # H is symmetric: the gradient is H g, unscaled


def dense_fastfood(P: Fastfood) -> torch.Tensor:
    """The transform as a dense (D, d) matrix, from its definition: H G Pi H B on the first min(d, n)
    coordinates, n = 2^ceil(log2 D), rows cut to D, divided by sqrt(D * sum G^2) (the public
    intrinsic-dimension code); P supplies only its random draws."""
    signs, gauss = P.signs_and_gauss(torch.device("cpu"))
    n, D = P.n, P.numel
    pi = torch.zeros(n, n, dtype=torch.float64)
    pi[torch.arange(n), P.perm.long()] = 1.0  # (Pi x)[k] = x[perm[k]]
    H = hadamard(n).double()
    M = H @ torch.diag(gauss.double()) @ pi @ H @ torch.diag(signs.double())
    M = M[:D] / math.sqrt(D * float((gauss.double() ** 2).sum()))
    used = min(P.d, n)
    return torch.cat([M[:, :used], torch.zeros(D, P.d - used, dtype=torch.float64)], 1)


@pytest.mark.parametrize(
    "d, numel",
    [
        (40, 30),
        pytest.param(10, 1025, marks=pytest.mark.slow),
        pytest.param(700, 1536, marks=pytest.mark.slow),
        (3000, 384),
        (5, 1),
        (16, 16),
    ],
)
def test_fastfood_matches_the_dense_transform(d, numel):
    """Non-power-of-two sizes and d > D (theta_d cropped to n, as the reference's negative padding does)."""
    P = Fastfood(d=d, numel=numel, seed=7, device=torch.device("cpu"))
    assert P.n == 1 << math.ceil(math.log2(numel)) if numel > 1 else P.n == 1
    theta = torch.randn(d, dtype=torch.float64, requires_grad=True)
    dense = dense_fastfood(P)
    assert torch.allclose(P(theta).double(), dense @ theta.detach(), atol=1e-5)
    g = torch.randn(numel, dtype=torch.float64)
    (P(theta).double() * g).sum().backward()
    assert torch.allclose(theta.grad, dense.T @ g, atol=1e-5)  # the exact transpose, no extra rescaling


@pytest.mark.slow
@pytest.mark.parametrize("d, numel", [(256, 1025), (256, 1536), (100_000, 384)])
def test_fastfood_columns_have_unit_norm_in_expectation(d, numel):
    """Every used column of P has squared norm 1 in expectation (the old sqrt(n * sum G^2) gave 0.707 at
    D = 1,025 and 0.055 for a 384-wide bias at d = 100,000)."""
    P = Fastfood(d=d, numel=numel, seed=3, device=torch.device("cpu"))
    dense = dense_fastfood(P)
    used = min(d, P.n)
    norms2 = (dense[:, :used] ** 2).sum(0)
    assert abs(float(norms2.mean()) - 1.0) < 0.05, float(norms2.mean())
    assert torch.count_nonzero(dense[:, used:]) == 0  # coordinates past n never reach this tensor


def test_projection_seed_follows_the_run_seed_when_asked(tiny_models, glue_dir):
    def theta_effect(seed, projection_seed):
        cfg = build_config(
            {
                "method": "did",
                "model": tiny_models["bert"],
                "task": "rte",
                "data_dir": str(glue_dir),
                "seed": seed,
                "method_options": {"d": 64, "projection_seed": projection_seed},
            }
        )
        b = build_model(cfg, get_task("rte"))
        proj = next(m for m in b.model.modules() if isinstance(m, Fastfood))
        return proj(torch.ones(64))

    assert torch.equal(theta_effect(1, 0), theta_effect(2, 0))  # fixed: the same subspace for every seed
    assert not torch.equal(theta_effect(1, None), theta_effect(2, None))  # None: each run seed its own
    assert torch.equal(theta_effect(5, None), theta_effect(5, None))  # and reproducible from it


@pytest.mark.parametrize("method", ["said", "did"])
def test_exactly_d_trained_and_gradients_only_there(tiny_models, glue_dir, method):
    d = 500
    cfg = build_config(
        {
            "method": method,
            "model": tiny_models["bert"],
            "task": "rte",
            "data_dir": str(glue_dir),
            "method_options": {"d": d},
        }
    )
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
    base = [
        "run",
        "--model",
        tiny_models["bert"],
        "--task",
        "rte",
        "--data-dir",
        str(glue_dir),
        "--max-steps",
        "1",
        "--tracking-uri",
        tracking_uri,
        "--output-dir",
        str(tmp_path),
    ]
    for argv, message in (
        ([*base, "--method", "did", "--set", "method.d=0"], "d 0 must be at least 1"),
        ([*base, "--method", "did", "--set", "method.d=10000000"], "exceeds the"),
        ([*base, "--method", "said", "--set", "method.d=5"], "must exceed the"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert not (tmp_path / "mlflow.db").exists() or all_runs(tracking_uri) == []


def test_save_and_reload_exact(tiny_models, glue_dir, tmp_path, tracking_uri):
    assert (
        main(
            [
                "run",
                "--method",
                "said",
                "--model",
                tiny_models["bert"],
                "--task",
                "rte",
                "--data-dir",
                str(glue_dir),
                "--max-steps",
                "3",
                "--batch-size",
                "4",
                "--lr",
                "5e-2",
                "--set",
                "method.d=300",
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
    assert run.data.metrics["params_method"] == 300
    # Projection state: an int32 permutation per padded element; over 4 bytes per parameter only by the
    # padding.
    assert 4 <= run.data.metrics["params_projection_bytes_per_param"] < 8
    result = evaluate_checkpoint(
        download_run_checkpoint(run.info.run_id, tracking_uri, tmp_path / "dl"), echo=lambda *a: None
    )
    assert result["metrics"]["dev"]["accuracy"] == run.data.metrics["best_dev_accuracy"]
    (adapter,) = (tmp_path / "out").glob("*/adapter")
    from safetensors.torch import load_file

    stored = load_file(str(adapter / "adapter.safetensors"))
    assert "subspace.theta" in stored and not any("perm" in k or "gauss" in k for k in stored)
    assert math.isfinite(run.data.metrics["best_dev_accuracy"])
