"""The adapter-only checkpoint reloads into a fresh backbone and gives exactly the logged metric."""

import functools
from pathlib import Path

import pytest
import torch

from bench.checkpoint import download_run_checkpoint
from bench.cli import main
from bench.reload import evaluate_checkpoint

from support import all_runs


@pytest.mark.parametrize(
    "method, family, task",
    [
        ("pasta", "roberta", "rte"),
        pytest.param("lora", "bert", "conll2003", marks=pytest.mark.slow),
        pytest.param("ptuning", "bert", "stsb", marks=pytest.mark.slow),
        pytest.param("full", "roberta", "sst2", marks=pytest.mark.slow),
        # peft tuners: shared random projections stored with the adapter (VeRA), a rank budget reallocated
        # in the loop (AdaLoRA)
        pytest.param("vera", "roberta", "rte", marks=pytest.mark.slow),
        pytest.param("adalora", "modernbert", "conll2003", marks=pytest.mark.slow),
        # prompt tuning on tagging: the virtual tokens' positions dropped from logits and labels
        pytest.param("prompt_tuning", "roberta", "conll2003", marks=pytest.mark.slow),
    ],
)
def test_eval_run_reproduces_logged_metrics(
    tiny_models, glue_dir, tmp_path, tracking_uri, capsys, method, family, task
):
    assert (
        main(
            [
                "run",
                "--method",
                method,
                "--model",
                tiny_models[family],
                "--task",
                task,
                "--data-dir",
                str(glue_dir),
                "--epochs",
                "2",
                "--batch-size",
                "8",
                "--lr",
                "1e-2",
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
    directory = download_run_checkpoint(run.info.run_id, tracking_uri, tmp_path / "dl")
    result = evaluate_checkpoint(directory, echo=lambda *a: None)
    for split, metrics in result["metrics"].items():
        for name, value in metrics.items():
            logged = (
                f"{split}_{name}" if split.startswith("test") else f"best_{split}_{name}"
            )  # test: at the best epoch
            assert value == run.data.metrics[logged], (split, name)
    if task == "conll2003":  # the labelled test split is scored and logged
        assert {"test_f1", "test_precision", "test_recall"} <= set(run.data.metrics) and "test" in result[
            "metrics"
        ]
    assert run.data.tags["selected_on"] == "dev"
    capsys.readouterr()
    assert main(["eval", "--run", run.info.run_id, "--tracking-uri", tracking_uri]) == 0
    assert "logged" in capsys.readouterr().out


def test_eval_bad_input(tracking_uri, tmp_path, capsys):
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["eval", "--run", "0123abc", "--tracking-uri", missing]) == 2
    assert (
        "no MLflow store at" in capsys.readouterr().err and not (tmp_path / "none.db").exists()
    )  # not created
    assert main(["eval", "--run", "0123abc", "--tracking-uri", tracking_uri]) == 2
    assert "no MLflow run '0123abc'" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path)]) == 2
    assert "not a bench checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_compiled_training_stores_plain_names_and_reloads(
    tiny_models, glue_dir, tmp_path, tracking_uri, monkeypatch
):
    """--set compile=true trains through torch.compile; the checkpoint still loads into a plain model. The
    graphs go through dynamo and AOTAutograd as with the default backend, but are run eagerly (aot_eager):
    inductor's C++ code generation took two minutes of a 2-core machine and is torch's to test, not ours."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    assert (
        main(
            [
                "run",
                "--method",
                "lora",
                "--model",
                tiny_models["bert"],
                "--task",
                "sst2",
                "--data-dir",
                str(glue_dir),
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--lr",
                "1e-2",
                "--set",
                "compile=true",
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
    assert run.data.params["compile"] == "True"
    result = evaluate_checkpoint(
        download_run_checkpoint(run.info.run_id, tracking_uri, tmp_path / "dl"), echo=lambda *a: None
    )
    assert result["metrics"]["dev"]["accuracy"] == pytest.approx(
        run.data.metrics["best_dev_accuracy"], abs=1e-6
    )


@pytest.mark.parametrize(
    "task, files",
    [
        pytest.param("rte", {"RTE.tsv": 7}, marks=pytest.mark.slow),
        ("mnli", {"MNLI-m.tsv": 4, "MNLI-mm.tsv": 4}),
        pytest.param("stsb", {"STS-B.tsv": 5}, marks=pytest.mark.slow),
    ],
)
def test_predict_writes_glue_server_files(tiny_models, glue_dir, tmp_path, tracking_uri, capsys, task, files):
    import tempfile

    from bench.tasks import get_task

    assert (
        main(
            [
                "run",
                "--method",
                "lora",
                "--model",
                tiny_models["bert"],
                "--task",
                task,
                "--data-dir",
                str(glue_dir),
                "--max-steps",
                "2",
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
    before = set(Path(tempfile.gettempdir()).glob("bench-eval-*"))
    out = tmp_path / "pred"
    assert (
        main(["predict", "--run", run.info.run_id, "--tracking-uri", tracking_uri, "--out-dir", str(out)])
        == 0
    )
    assert set(Path(tempfile.gettempdir()).glob("bench-eval-*")) == before  # the download is cleaned up
    t = get_task(task)
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    for name, n in files.items():
        lines = (out / name).read_text().splitlines()
        assert lines[0] == "index\tprediction" and len(lines) == n + 1
        assert [line.split("\t")[0] for line in lines[1:]] == [str(i) for i in range(n)]
        for line in lines[1:]:
            value = line.split("\t")[1]
            assert value in t.labels if t.labels else float(value) == float(value)
    assert main(["predict", "--run", run.info.run_id, "--tracking-uri", tracking_uri, "--split", "dev"]) == 2
    assert "no unlabelled split 'dev'" in capsys.readouterr().err


def test_checkpoint_is_stored_once(tiny_models, glue_dir, tmp_path, tracking_uri):
    """With a local artifact store the checkpoint is written once, into the run's artifacts; the output
    directory links to it (a full-FT checkpoint used to be written twice)."""
    assert (
        main(
            [
                "run",
                "--method",
                "full",
                "--model",
                tiny_models["bert"],
                "--task",
                "rte",
                "--data-dir",
                str(glue_dir),
                "--max-steps",
                "1",
                "--batch-size",
                "4",
                "--output-dir",
                str(tmp_path / "out"),
                "--tracking-uri",
                tracking_uri,
                "--no-progress",
            ]
        )
        == 0
    )
    (link,) = (tmp_path / "out").glob("*/adapter")
    assert link.is_symlink()
    weights = [p for p in tmp_path.rglob("adapter.safetensors") if not p.is_symlink()]
    assert len(weights) == 1 and weights[0].resolve() == (link / "adapter.safetensors").resolve()
