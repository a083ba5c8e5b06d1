"""Report tables from runs made here: LaTeX compiles, numbers equal a hand computation of mean ± std."""

import shutil
import subprocess

import numpy as np
import pytest

from bench.cli import main

from conftest import all_runs


@pytest.fixture(scope="module")
def tracked(tiny_models, glue_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    for method in ("full", "lora"):
        for task in ("rte", "stsb"):
            for seed, phase in ((1, "final"), (2, "final"), (3, "trial")):
                assert main(["run", "--method", method, "--model", tiny_models["bert"], "--task", task,
                             "--data-dir", str(glue_dir), "--epochs", "2", "--batch-size", "8", "--lr", "5e-3",
                             "--seed", str(seed), "--set", f"tags={{phase: {phase}}}", "--output-dir",
                             str(tmp / "out"), "--tracking-uri", uri, "--no-progress"]) == 0
    return uri, tiny_models["bert"], tmp


def hand(uri, method, task):
    vals = [100 * r.data.metrics["best_dev_glue_score"] for r in all_runs(uri)
            if r.data.tags["method"] == method and r.data.tags["task"] == task and r.data.tags["phase"] == "final"]
    assert len(vals) == 2
    return np.mean(vals), np.std(vals, ddof=1)


def report(capsys, uri, model, fmt, *extra):
    capsys.readouterr()
    assert main(["report", "table", "--model", model, "--format", fmt, "--tracking-uri", uri, *extra]) == 0
    return capsys.readouterr().out


def test_markdown_csv_latex_agree_with_hand_computation(tracked, capsys):
    uri, model, _ = tracked
    md = report(capsys, uri, model, "md")
    csv = report(capsys, uri, model, "csv")
    tex = report(capsys, uri, model, "latex")
    assert "| Method | %Param | RTE | STS-B | Avg |" in md and "over 2 seeds" in md
    for method in ("full", "lora"):
        avgs = []
        for task in ("rte", "stsb"):
            mean, std = hand(uri, method, task)
            avgs.append(mean)
            assert f"{mean:.1f} ± {std:.1f}" in md.replace("**", "")
            assert f"{mean:.2f}±{std:.2f} (n=2)" in csv
            assert f"{mean:.1f}" in tex and f"$\\pm${std:.1f}" in tex
        assert f"{np.mean(avgs):.1f}" in md
    assert md.count("**") >= 2 * 3  # a bold best in each of RTE, STS-B, Avg


def test_latex_compiles_standalone(tracked, capsys):
    uri, model, tmp = tracked
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (CI installs texlive-latex-recommended)")
    tex = report(capsys, uri, model, "latex", "--standalone")
    assert r"\toprule" in tex and r"\textbf{" in tex
    (tmp / "table.tex").write_text(tex)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "table.tex"], cwd=tmp,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp / "table.pdf").stat().st_size > 1000


def test_only_final_runs_unless_all_runs(tracked, capsys):
    uri, model, _ = tracked
    assert "over 2 seeds" in report(capsys, uri, model, "md")
    assert "over 3 seeds" in report(capsys, uri, model, "md", "--all-runs")


def test_report_bad_model(tracked, capsys):
    uri, _, _ = tracked
    assert main(["report", "table", "--model", "nope", "--tracking-uri", uri]) == 2
    assert "no runs for model 'nope' (choices: " in capsys.readouterr().err


def test_published_rows_are_marked(capsys):
    import pandas as pd

    from reports.tables import build, render_results

    agg = pd.DataFrame([{"model": "roberta-large", "method": m, "column": c, "task": t, "mean": v, "std": 0.5,
                         "n": 3, "seeds": "1,2,3", "params_method": p, "params_backbone": 354_310_144.0,
                         "studies": ""}
                        for m, p, v in (("full", 354_310_144.0, 86.0), ("lora", 786_432.0, 87.0))
                        for c, t in (("RTE", "rte"), ("MRPC", "mrpc"))])
    md = render_results(build(agg, "roberta-large", None, None), "md", published=True)
    assert "| LoRA (Hu et al., published, dev) | 0.8M | 90.9 | 87.4 | 89.2 |" in md
    assert "| lora | 0.222% | **87.0** ± 0.5 | **87.0** ± 0.5 | **87.0** |" in md


def test_latex_escape_sets_comparisons_as_math():
    from reports.render import latex_escape

    # OT1 text fonts print "<" and ">" as inverted marks; d90 tables say "<= 1,154" and "> 7,682".
    assert latex_escape("<= 5, > 3, >= 1, 90% & $") == r"$\le$ 5, $>$ 3, $\ge$ 1, 90\% \& \$"
