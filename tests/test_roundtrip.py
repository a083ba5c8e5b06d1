"""The adapter-only checkpoint reloads into a fresh backbone and gives exactly the logged metric."""

import pytest

from bench.cli import main
from bench.runner import download_run_checkpoint, evaluate_checkpoint

from conftest import all_runs


@pytest.mark.parametrize("method, family, task", [("pasta", "roberta", "rte"), ("lora", "bert", "conll2003"),
                                                  ("ptuning", "bert", "stsb"), ("full", "roberta", "sst2")])
def test_eval_run_reproduces_logged_metrics(tiny_models, glue_dir, tmp_path, tracking_uri, capsys, method, family,
                                            task):
    assert main(["run", "--method", method, "--model", tiny_models[family], "--task", task, "--data-dir",
                 str(glue_dir), "--epochs", "2", "--batch-size", "8", "--lr", "1e-2", "--output-dir",
                 str(tmp_path / "out"), "--tracking-uri", tracking_uri, "--no-progress"]) == 0
    (run,) = all_runs(tracking_uri)
    directory = download_run_checkpoint(run.info.run_id, tracking_uri)
    result = evaluate_checkpoint(directory, echo=lambda *a: None)
    for split, metrics in result["metrics"].items():
        for name, value in metrics.items():
            logged = f"{split}_{name}" if split.startswith("test") else f"best_{split}_{name}"  # test: at the best epoch
            assert value == run.data.metrics[logged], (split, name)
    if task == "conll2003":  # the labelled test split is scored and logged
        assert {"test_f1", "test_precision", "test_recall"} <= set(run.data.metrics) and "test" in result["metrics"]
    assert run.data.tags["selected_on"] == "dev"
    capsys.readouterr()
    assert main(["eval", "--run", run.info.run_id, "--tracking-uri", tracking_uri]) == 0
    assert "logged" in capsys.readouterr().out


def test_eval_bad_input(tracking_uri, tmp_path, capsys):
    assert main(["eval", "--run", "0123abc", "--tracking-uri", tracking_uri]) == 2
    assert "no MLflow run '0123abc'" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path)]) == 2
    assert "not a bench checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_compiled_training_stores_plain_names_and_reloads(tiny_models, glue_dir, tmp_path, tracking_uri):
    """--set compile=true trains through torch.compile; the checkpoint still loads into a plain model."""
    assert main(["run", "--method", "lora", "--model", tiny_models["bert"], "--task", "sst2", "--data-dir",
                 str(glue_dir), "--epochs", "1", "--batch-size", "8", "--lr", "1e-2", "--set", "compile=true",
                 "--output-dir", str(tmp_path / "out"), "--tracking-uri", tracking_uri, "--no-progress"]) == 0
    (run,) = all_runs(tracking_uri)
    assert run.data.params["compile"] == "True"
    result = evaluate_checkpoint(download_run_checkpoint(run.info.run_id, tracking_uri), echo=lambda *a: None)
    assert result["metrics"]["dev"]["accuracy"] == pytest.approx(run.data.metrics["best_dev_accuracy"], abs=1e-6)
