"""Intrinsic-dimension curves: d90 arithmetic, and the grid end to end on a tiny model (resumable)."""

import shutil
import subprocess

import numpy as np
import pytest

from bench.cli import main
from reports.intrinsic import ABOVE, BELOW, analyse, bootstrap_d90, chance_corrected, d90, target
from reports.runs import load_runs

from support import seeded_store


def test_d90_interpolates_in_log_params():
    value, how = d90([10, 100, 1000], [0.5, 0.7, 0.9], 0.8)
    assert how == "interpolated" and value == pytest.approx(10**2.5)


def test_d90_uses_the_monotone_curve():
    # The dip at 1000 does not matter; the crossing is between 10 and 100 at 3/4 of the way in log10.
    value, _ = d90([10, 100, 1000], [0.5, 0.9, 0.7], 0.8)
    assert value == pytest.approx(10**1.75)


def test_d90_never_or_always_crosses():
    assert d90([10, 100], [0.9, 0.95], 0.8) == (10.0, BELOW)
    assert d90([10, 100], [0.5, 0.6], 0.8) == (100.0, ABOVE)


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(0)
    pts = [rng.normal(m, 0.01, 5) for m in (0.5, 0.7, 0.9)]
    lo, hi = bootstrap_d90([10, 100, 1000], pts, rng.normal(0.9, 0.01, 5), n=300)
    est, _ = d90([10, 100, 1000], [p.mean() for p in pts], 0.9 * 0.9)
    assert lo <= est <= hi and np.isfinite(hi)


def test_chance_corrected_score():
    assert chance_corrected(0.75, 0.5, 1.0) == 0.5
    assert chance_corrected(0.8, None, 1.0) is None


def test_mrpc_trap_chance_corrected_target():
    """90% of a weak full FT (0.70) is below the majority score (0.684): every point passes it, and only
    the chance-corrected target (g >= 0.9, i.e. 0.6984) separates the sizes."""
    import pandas as pd

    assert target(0.7) == pytest.approx(0.63) and target(0.7, 0.684) == pytest.approx(0.6984)
    rows = [("full", "-", 22_000_000, [0.70, 0.70, 0.70])] + [
        ("lora", str(r), n, [m] * 3)
        for r, n, m in ((1, 1_000, 0.686), (8, 10_000, 0.69), (64, 100_000, 0.71))
    ]
    df = pd.DataFrame(
        [
            {
                "tags.method": meth,
                "tags.knob_value": k,
                "params.lr": "1e-3",
                "metrics.params_method": n,
                "metrics.params_trainable": n,
                "metrics.best_dev_accuracy": v,
                "metrics.baseline_dev_accuracy": 0.684,
            }
            for meth, k, n, vals in rows
            for v in vals
        ]
    )
    a = analyse(df, "mrpc")
    by_target = {r["target"]: r for r in a["rows"] if r["head"]}
    assert by_target["90% of full"]["status"] == BELOW
    g = by_target["g >= 0.9"]
    assert g["status"] == "interpolated" and g["d90"] == pytest.approx(10 ** (4 + (0.6984 - 0.69) / 0.02))


@pytest.mark.slow
def test_intrinsic_grid_parallel_resume_and_report(tiny_models, glue_dir, tmp_path, capsys):
    uri = seeded_store(tmp_path / "mlflow.db")
    argv = [
        "intrinsic",
        "--model",
        tiny_models["bert"],
        "--task",
        "rte",
        "--methods",
        "lora,bitfit",
        "--seeds",
        "2",
        "--points",
        "2",
        "--data-dir",
        str(glue_dir),
        "--tracking-uri",
        uri,
        "--output-dir",
        str(tmp_path / "o"),
        "--set",
        "epochs=1",
        "--set",
        "batch_size=8",
        "--lr-grid",
        "full=1e-3;head=1e-2,1e-3",
    ]
    assert main([*argv, "--workers", "2"]) == 0  # two spawned worker processes share one SQLite store
    out = capsys.readouterr().out
    # (full + 2 head lrs + 2 lora + 2 bitfit) x 2 seeds
    assert "14 point runs, 0 already finished, 14 to run in 2 worker processes" in out
    assert out.count(": finished") == 14 and "14 of 14 point runs finished" in out
    assert main(argv) == 0  # resumable: every point is skipped the second time
    assert "14 point runs, 14 already finished, 0 to run" in capsys.readouterr().out
    runs = load_runs(uri, phase="intrinsic")
    assert len(runs) == 14 and runs["tags.mlflow.parentRunId"].nunique() == 1
    assert runs.groupby(["tags.config_hash", "tags.seed"]).size().max() == 1  # no point ran twice
    assert (
        main(
            [
                "report",
                "intrinsic",
                "--model",
                tiny_models["bert"],
                "--task",
                "rte",
                "--tracking-uri",
                uri,
                "--out-dir",
                str(tmp_path / "docs"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "d90 on dev_accuracy" in out and "| LoRA | with head |" in out and "| BitFit | without head |" in out
    )
    assert "Budget: 2 seeds per point, 1.0 epochs on all training examples, 14 runs." in out
    for ext in ("png", "pdf", "d90.md", "d90.tex"):
        sep = "." if ext in ("png", "pdf") else "-"
        assert (tmp_path / "docs" / f"intrinsic-tiny-bert-rte{sep}{ext}").stat().st_size > 0
    if shutil.which(
        "pdflatex"
    ):  # the d90 and points tables compile as printed with --standalone (CI installs TeX)
        assert (
            main(
                [
                    "report",
                    "intrinsic",
                    "--model",
                    tiny_models["bert"],
                    "--task",
                    "rte",
                    "--tracking-uri",
                    uri,
                    "--out-dir",
                    str(tmp_path / "docs"),
                    "--format",
                    "latex",
                    "--standalone",
                ]
            )
            == 0
        )
        (tmp_path / "d90.tex").write_text(capsys.readouterr().out)
        proc = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "d90.tex"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout[-2000:]
    assert main(["intrinsic", "--task", "rte", "--lr-grid", "pasta"]) == 2


@pytest.mark.slow
def test_d90_across_models_with_said(tiny_models, glue_dir, tmp_path, capsys):
    """SAID's d is a knob like any other; one figure of d90 against model size across two models, with the
    published SAID/DID d90 markers on MRPC."""
    uri = seeded_store(tmp_path / "mlflow.db")
    for family in ("bert", "roberta"):
        assert (
            main(
                [
                    "intrinsic",
                    "--model",
                    tiny_models[family],
                    "--task",
                    "mrpc",
                    "--methods",
                    "said",
                    "--seeds",
                    "1",
                    "--points",
                    "2",
                    "--data-dir",
                    str(glue_dir),
                    "--tracking-uri",
                    uri,
                    "--output-dir",
                    str(tmp_path / "o"),
                    "--set",
                    "max_steps=2",
                    "--set",
                    "batch_size=8",
                ]
            )
            == 0
        )
    runs = load_runs(uri, phase="intrinsic")
    said = runs[runs["tags.method"] == "said"]
    for _, g in said.groupby("tags.model"):
        values = sorted(int(v) for v in g["tags.knob_value"].unique())
        assert len(values) == 2 and values[0] == 2 * (16 * 2 + 16)  # above the tiny model's tensor count
    assert all(said["metrics.params_method"] == said["tags.knob_value"].astype(int))  # exactly d trained
    capsys.readouterr()
    assert (
        main(
            [
                "report",
                "intrinsic",
                "--models",
                f"{tiny_models['bert']},{tiny_models['roberta']}",
                "--task",
                "mrpc",
                "--tracking-uri",
                uri,
                "--out-dir",
                str(tmp_path / "docs"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| tiny-bert |" in out and "| tiny-roberta |" in out and "SAID" in out
    assert (tmp_path / "docs" / "intrinsic-models-mrpc.png").stat().st_size > 0
