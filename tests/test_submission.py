"""A complete GLUE test-server submission: AX.tsv from the MNLI model when GLUE's diagnostic file is there
(skipped with a line when not), WNLI.tsv as GLUE's baselines answer it (the training majority), and the
list of files still missing."""

import shutil

import pytest

from bench.cli import main

from support import all_runs


@pytest.mark.slow
def test_ax_is_written_from_the_mnli_model_when_its_file_is_there(
    tiny_models, glue_dir, tmp_path, tracking_uri, capsys
):
    data = tmp_path / "glue"
    shutil.copytree(glue_dir, data)
    assert (
        main(
            [
                "run",
                "--method",
                "head",
                "--model",
                tiny_models["bert"],
                "--task",
                "mnli",
                "--data-dir",
                str(data),
                "--max-steps",
                "1",
                "--batch-size",
                "8",
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
    base = ["predict", "--run", run.info.run_id, "--tracking-uri", tracking_uri, "--data-dir", str(data)]
    assert main([*base, "--out-dir", str(tmp_path / "without")]) == 0
    out = capsys.readouterr().out
    assert "AX.tsv not written: missing test_ax file" in out
    assert sorted(p.name for p in (tmp_path / "without").iterdir()) == ["MNLI-m.tsv", "MNLI-mm.tsv"]
    assert "still missing for a complete GLUE submission: AX.tsv, CoLA.tsv" in out

    (data / "diagnostic").mkdir()
    (data / "diagnostic" / "diagnostic.tsv").write_text(
        "index\tsentence1\tsentence2\n" + "".join(f"{i}\tthe cat sat\ta dog ran {i}\n" for i in range(6))
    )
    assert main([*base, "--out-dir", str(tmp_path / "with")]) == 0
    lines = (tmp_path / "with" / "AX.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and [line.split("\t")[0] for line in lines[1:]] == list("012345")
    assert all(line.split("\t")[1] in ("entailment", "neutral", "contradiction") for line in lines[1:])


def test_wnli_is_the_training_majority(tmp_path, capsys):
    wnli = tmp_path / "glue" / "WNLI"
    wnli.mkdir(parents=True)
    labels = [1, 0, 1, 1, 0, 1, 0, 1]  # five 1s, three 0s
    (wnli / "train.tsv").write_text(
        "index\tsentence1\tsentence2\tlabel\n" + "".join(f"{i}\ta\tb\t{y}\n" for i, y in enumerate(labels))
    )
    (wnli / "test.tsv").write_text(
        "index\tsentence1\tsentence2\n" + "".join(f"{i}\ta\tb\n" for i in range(4))
    )
    out = tmp_path / "sub"
    assert (
        main(["predict", "--wnli-majority", "--data-dir", str(tmp_path / "glue"), "--out-dir", str(out)]) == 0
    )
    assert (out / "WNLI.tsv").read_text() == "index\tprediction\n0\t1\n1\t1\n2\t1\n3\t1\n"
    said = capsys.readouterr().out
    assert "label 1 (the training majority, 5 of 8)" in said and "WNLI.tsv" not in said.split("missing")[-1]


def test_wnli_without_its_files_is_one_line(tmp_path, capsys):
    assert (
        main(["predict", "--wnli-majority", "--data-dir", str(tmp_path), "--out-dir", str(tmp_path / "o")])
        == 2
    )
    err = capsys.readouterr().err
    assert "no WNLI train.tsv and test.tsv" in err and err.count("\n") == 1
