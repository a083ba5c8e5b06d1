"""Report tables from runs made here: LaTeX compiles, numbers equal a hand computation of mean ± std."""

import shutil
import subprocess

import numpy as np
import pytest

from bench.cli import main

from support import all_runs, seeded_store


@pytest.fixture(scope="module")
def tracked(tiny_models, glue_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    uri = seeded_store(tmp / "mlflow.db")
    for method in ("full", "lora"):
        for task in ("rte", "stsb"):
            for seed, phase in ((1, "final"), (2, "final"), (3, "trial")):
                assert (
                    main(
                        [
                            "run",
                            "--method",
                            method,
                            "--model",
                            tiny_models["bert"],
                            "--task",
                            task,
                            "--data-dir",
                            str(glue_dir),
                            "--epochs",
                            "1",
                            "--batch-size",
                            "8",
                            "--lr",
                            "5e-3",
                            "--seed",
                            str(seed),
                            "--set",
                            f"tags={{phase: {phase}}}",
                            "--output-dir",
                            str(tmp / "out"),
                            "--tracking-uri",
                            uri,
                            "--no-progress",
                        ]
                    )
                    == 0
                )
    return uri, tiny_models["bert"], tmp


def hand(uri, method, task):
    vals = [
        100 * r.data.metrics["best_dev_glue_score"]
        for r in all_runs(uri)
        if r.data.tags["method"] == method and r.data.tags["task"] == task and r.data.tags["phase"] == "final"
    ]
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
    assert "| Method | %Param | Head | RTE | STS-B | Avg |" in md and "over 2 seeds" in md
    import csv as csvlib
    import io

    rows = {r["method"]: r for r in csvlib.DictReader(io.StringIO(csv))}
    for method in ("full", "lora"):
        avgs = []
        for task in ("rte", "stsb"):
            mean, std = hand(uri, method, task)
            avgs.append(mean)
            assert f"{mean:.1f} ± {std:.1f}" in md.replace("**", "")
            label = {"rte": "RTE", "stsb": "STS-B"}[task]  # the CSV holds numbers, one column each
            assert float(rows[method][f"{label} mean"]) == pytest.approx(mean, abs=1e-4)
            assert float(rows[method][f"{label} std"]) == pytest.approx(std, abs=1e-4)
            assert rows[method][f"{label} n"] == "2"
            assert f"{mean:.1f}" in tex and f"$\\pm$ {std:.1f}" in tex
        assert f"{np.mean(avgs):.1f}" in md
    assert md.count("**") >= 2 * 3  # a bold best in each of RTE, STS-B, Avg


def test_latex_compiles_standalone(tracked, capsys):
    uri, model, tmp = tracked
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (CI installs texlive-latex-recommended)")
    tex = report(capsys, uri, model, "latex", "--standalone")
    assert r"\toprule" in tex and r"\bfseries" in tex and r"\label{tab:tiny-bert-results}" in tex
    (tmp / "table.tex").write_text(tex)
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "table.tex"],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
    )
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


def test_published_rows_are_metric_true(capsys):
    """Table 3 layout: STS-B Pearson, MRPC accuracy (not the GLUE score); published rows after ours with their
    own source, bold over every row, and the average the paper printed."""
    import pandas as pd

    from reports.published import get_layout
    from reports.tables import build, render_results

    layout = get_layout(None, "roberta-large")
    assert layout.name == "pasta-table3"
    agg = pd.DataFrame(
        [
            {
                "model": "roberta-large",
                "method": m,
                "column": c,
                "task": t,
                "mean": v,
                "std": 0.5,
                "n": 3,
                "seeds": "1,2,3",
                "params_method": p,
                "params_backbone": 354_310_144.0,
                "params_head": 1_051_650.0,
                "studies": "",
            }
            for m, p, v in (("full", 354_310_144.0, 86.0), ("lora", 786_432.0, 95.0))
            for c, t in (("RTE", "rte"), ("MRPC", "mrpc"))
        ]
    )
    md = render_results(build(agg, "roberta-large", None, None, layout), "md")
    assert "| LoRA | 0.222 | 1,051,650 | **95.0 ± 0.5** |" in md  # ours beat the published 87.4: bold is ours
    assert "| LoRA (published) | 0.24 | - | 87.4 | 68.2 | **92.6** | 90.9 |" in md  # ours have no STS-B
    assert md.index("| LoRA |") < md.index("(published)")
    # A published value above our best is marked, not bolded: our full FT alone on RTE (86.0 < 87.4).
    only_full = render_results(build(agg[agg["method"] == "full"], "roberta-large", None, None, layout), "md")
    assert (
        "| **86.0 ± 0.5** |" in only_full
        and "| 87.4 † |" in only_full
        and "†: a published value" in only_full
    )
    assert "STS-B Pearson" in md and "MRPC acc" in md and "Hu et al. 2021" in md
    tex = render_results(build(agg, "roberta-large", None, None, layout), "latex")
    assert tex.count(r"\midrule") == 2  # under the header, and between ours and the published rows


@pytest.mark.parametrize("name", ["pasta-table2", "pasta-table3", "pasta-bert-base"])
def test_layout_average_rule_recomputes_every_printed_average(name):
    """An independent check of the transcription and of the averaging rule (each task once)."""
    from reports.published import load_layouts
    from reports.tables import average

    layout = load_layouts()[name]
    tasks = {c["label"]: c["task"] for c in layout.columns}
    for row in layout.published:
        if "avg" in row:
            assert average(row["values"], layout.labels, tasks) == pytest.approx(row["avg"], abs=0.051), row[
                "label"
            ]


def test_published_alone_when_no_runs(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["report", "table", "--model", "bert-large-cased", "--published", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "PASTA (published)" in out and "STS-B Spearman" in out and "MRPC F1" in out and "test set" in out
    assert not (tmp_path / "none.db").exists()  # reading never creates a store


def test_latex_escape_sets_comparisons_as_math():
    from reports.render import latex_escape

    # OT1 text fonts print "<" and ">" as inverted marks; d90 tables say "<= 1,154" and "> 7,682".
    assert latex_escape("<= 5, > 3, >= 1, 90% & $") == r"$\le$ 5, $>$ 3, $\ge$ 1, 90\% \& \$"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["bert-large-cased", "roberta-large", "bert-base-cased"])
def test_published_layouts_compile(tmp_path, capsys, model):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (CI installs texlive-latex-recommended)")
    assert (
        main(
            [
                "report",
                "table",
                "--model",
                model,
                "--published",
                "--format",
                "latex",
                "--standalone",
                "--tracking-uri",
                f"sqlite:///{tmp_path / 'none.db'}",
            ]
        )
        == 0
    )
    (tmp_path / "t.tex").write_text(capsys.readouterr().out)
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ["params", "--model", "bert-large-cased,roberta-large", "--format", "latex", "--standalone"],
        ["params", "--published", "--format", "latex", "--standalone"],
        ["report", "table", "--model", "roberta-large", "--published", "--format", "latex", "--standalone"],
        [
            "report",
            "table",
            "--model",
            "bert-large-cased",
            "--layout",
            "pasta-conll",
            "--format",
            "latex",
            "--standalone",
        ],
    ],
    ids=["params", "params-published", "table3-published-only", "conll-published-only"],
)
def test_every_latex_report_compiles(argv, tmp_path, capsys):
    """Each LaTeX report, as printed with --standalone, compiles with pdflatex (the results table with runs
    and the intrinsic tables are compiled in their own tests)."""
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (CI installs texlive-latex-recommended)")
    capsys.readouterr()
    assert (
        main(
            [
                *argv,
                *(["--tracking-uri", f"sqlite:///{tmp_path / 'empty.db'}"] if argv[0] == "report" else []),
            ]
        )
        == 0
    )
    tex = capsys.readouterr().out
    assert tex.startswith("\\documentclass") and "\\label{" in tex and "\\toprule" in tex
    (tmp_path / "t.tex").write_text(tex)
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "Overfull \\hbox" not in proc.stdout  # wide tables fit a landscape page


def test_pareto_frontier_rule():
    from reports.pareto import frontier

    x, y = np.array([1.0, 2.0, 3.0, 2.0, 0.5]), np.array([50.0, 60.0, 55.0, 60.0, 40.0])
    # (3, 55) is beaten by (2, 60); the two (2, 60) tie and stay; the cheapest stays whatever it scores.
    assert frontier(x, y).tolist() == [True, True, False, True, True]


@pytest.mark.slow
def test_pareto_report_from_tracked_runs(tracked, capsys, tmp_path):
    uri, model, _ = tracked
    for cost in ("params", "time", "memory"):
        capsys.readouterr()
        assert (
            main(
                [
                    "report",
                    "pareto",
                    "--model",
                    model,
                    "--x",
                    cost,
                    "--tracking-uri",
                    uri,
                    "--out-dir",
                    str(tmp_path / "docs"),
                ]
            )
            == 0
        )
        out = capsys.readouterr().out
        column = {"params": "%Param", "time": "train seconds", "memory": "peak MiB"}[cost]
        assert f"| task | method | {column} | metric x100 | seeds | frontier |" in out
        assert "| RTE | Full FT" in out and "| STS-B | LoRA" in out and "over 2 seeds" in out
        assert (tmp_path / "docs" / f"pareto-tiny-bert-{cost}.png").stat().st_size > 0
    rows = [line for line in out.splitlines() if line.startswith("| RTE |")]
    assert any(line.endswith("| yes |") for line in rows)  # someone is on the frontier
    assert main(["report", "pareto", "--model", "nope", "--tracking-uri", uri]) == 2
    assert "(no runs of it) 'nope'" in capsys.readouterr().err
