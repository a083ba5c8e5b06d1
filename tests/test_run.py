"""Tiny locally built BERT and RoBERTa run every task shape end to end, tracked in MLflow."""

import json
import platform
import subprocess
import sys

import pytest
import yaml

from bench.cli import main

from support import all_runs, seeded_store

SHAPES = {
    "rte": "pair",
    "sst2": "single",
    "stsb": "regression",
    "conll2003": "tagging",
    "mnli": "two dev splits",
}


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    return seeded_store(tmp_path_factory.mktemp("mlflow") / "mlflow.db")


@pytest.mark.parametrize("family", ["bert", pytest.param("roberta", marks=pytest.mark.slow)])
@pytest.mark.parametrize("task", list(SHAPES))
def test_tiny_run_every_task_shape(tiny_models, glue_dir, tmp_path, uri, family, task):
    from mlflow.tracking import MlflowClient

    from bench.tasks import get_task

    code = main(
        [
            "run",
            "--method",
            "full",
            "--model",
            tiny_models[family],
            "--task",
            task,
            "--data-dir",
            str(glue_dir),
            "--max-steps",
            "3",
            "--batch-size",
            "8",
            "--output-dir",
            str(tmp_path),
            "--tracking-uri",
            uri,
            "--seed",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    run = [
        r
        for r in all_runs(uri)
        if r.data.tags["task"] == task and r.data.tags["model"] == tiny_models[family]
    ]
    assert len(run) == 1 and run[0].info.status == "FINISHED"
    run = run[0]
    t = get_task(task)
    for split in t.dev_splits:
        for metric in t.metrics:
            assert f"best_{split}_{metric}" in run.data.metrics
    assert run.data.tags["method"] == "full" and run.data.tags["seed"] == "1"
    assert run.info.run_name == f"full-tiny-{family}-{task}-s1"
    assert run.data.params["max_steps"] == "3" and run.data.params["lr"] == "2e-05"
    for key in (
        "params_trainable",
        "params_method",
        "params_backbone",
        "wall_seconds",
        "train_samples_per_s",
    ):
        assert key in run.data.metrics
    assert {"git_sha", "git_dirty", "version.torch", "device"} <= set(run.data.tags)
    # MLflow's own columns: source, user, commit; one dataset input per split read, with its digest and role.
    assert run.data.tags["mlflow.source.type"] == "LOCAL" and run.data.tags["mlflow.user"]
    assert run.data.tags.get("mlflow.source.git.commit", run.data.tags["git_sha"]) == run.data.tags["git_sha"]
    inputs = {
        i.dataset.name.split(" ")[0]: i
        for i in MlflowClient(uri).get_run(run.info.run_id).inputs.dataset_inputs
    }
    assert set(inputs) == {f"{task}-{s}" for s in ("train", *t.dev_splits, *t.test_splits)}
    assert (
        inputs[f"{task}-train"].tags[0].value == "train" and len(inputs[f"{task}-train"].dataset.digest) == 12
    )
    assert str(glue_dir) in inputs[f"{task}-train"].dataset.source
    # The configuration as it took effect: max_steps 3 of 3 steps per epoch is 1 epoch, not the 3 asked for;
    # the method's options once (method_config.*, defaults included).
    assert run.data.params["epochs"] == "1.0" and run.data.params["epochs_requested"] == "3.0"
    assert not any(k.startswith("method_options") for k in run.data.params)
    history = MlflowClient(uri).get_metric_history(run.info.run_id, f"{t.dev_splits[0]}_{t.main_metric}")
    assert len(history) == 1  # 3 steps < one epoch of 24 examples -> one evaluation
    losses = MlflowClient(uri).get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in losses] == [
        1,
        2,
        3,
    ]  # a short run still has a loss curve (log_every 20 > 3 steps)
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(run.info.run_id)}
    assert {"config.yaml", "adapter"} <= artifacts
    # The experiment's saved runs-table view (MLflow 3's envelope: name, createdAt, state as JSON text):
    # every column it selects is one this run has, the first being the task's dev metric, sorted best first.
    exp = MlflowClient(uri).get_experiment(run.info.experiment_id)
    view = json.loads(exp.tags[f"mlflow.sharedViewState.bench-{task}"])
    state = json.loads(view["state"])
    assert isinstance(view["name"], str) and isinstance(view["createdAt"], int)
    have = {
        "metrics": run.data.metrics,
        "params": run.data.params,
        "tags": run.data.tags,
        "attributes": {"Duration": 1},
    }
    for column in state["selectedColumns"]:
        kind, _, key = column.partition(".")
        assert key.startswith("`") and key.endswith("`") and key[1:-1] in have[kind], column
    main_column = f"metrics.`best_{t.dev_splits[0]}_{t.main_metric}`"
    assert state["selectedColumns"][0] == main_column and state["orderByKey"] == main_column
    assert state["orderByAsc"] is False


def test_config_file_set_and_flags_layer_in_order(tiny_models, glue_dir, tmp_path, uri):
    from bench.cli import build_parser
    from bench.cli.handlers.run import config_from_args

    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(
        yaml.safe_dump(
            {"method": "lora", "lr": 1e-3, "batch_size": 4, "method_options": {"r": 4, "alpha": 8}}
        )
    )
    args = build_parser().parse_args(
        [
            "run",
            "--config",
            str(cfg_file),
            "--set",
            "lr=5e-4",
            "--set",
            "method.r=2",
            "--batch-size",
            "16",
            "--task",
            "mrpc",
        ]
    )
    cfg = config_from_args(args)
    assert (cfg.method, cfg.lr, cfg.batch_size, cfg.task) == ("lora", 5e-4, 16, "mrpc")
    assert cfg.method_options == {"r": 2, "alpha": 8}


def test_run_help_shows_every_option_with_default(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for flag in (
        "--method",
        "--model",
        "--task",
        "--data-dir",
        "--config",
        "--set",
        "--epochs",
        "--max-steps",
        "--lr",
        "--batch-size",
        "--max-length",
        "--seed",
        "--output-dir",
        "--tracking-uri",
    ):
        assert flag in out
    assert "(default: 32)" in out and "(default: 'minilm')" in out


def test_patience_stops_early_and_best_epoch_is_restored(tiny_models, glue_dir, tmp_path, uri):
    from bench.resolve import build_config
    from bench.runner import run

    cfg = build_config(
        {
            "method": "full",
            "model": tiny_models["bert"],
            "task": "rte",
            "data_dir": str(glue_dir),
            "epochs": 30,
            "lr": 1e-9,
            "patience": 2,
            "batch_size": 8,
            "output_dir": str(tmp_path),
            "tracking_uri": uri,
            "warmup_ratio": 0.0,
        }
    )
    out = run(cfg, progress=False, echo=lambda *a: None)
    res = out["result"]
    assert res.stopped == "patience" and len(res.history) < 30
    assert res.best_epoch == 1  # lr 1e-9: nothing changes, ties keep the earliest epoch


def test_half_precision_checkpoint_trains_in_float32(tiny_models, tmp_path):
    """transformers 5 would keep a bf16 checkpoint in bf16; AdamW needs float32 master weights."""
    import shutil

    import torch
    from transformers import AutoModel

    from bench.models import load_model
    from bench.tasks import get_task

    half = tmp_path / "bf16"
    shutil.copytree(tiny_models["bert"], half)
    AutoModel.from_pretrained(tiny_models["bert"], dtype=torch.bfloat16).save_pretrained(half)
    assert {p.dtype for p in AutoModel.from_pretrained(half).parameters()} == {torch.bfloat16}
    model, _ = load_model(str(half), get_task("mrpc"))
    assert {p.dtype for p in model.parameters()} == {torch.float32}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pasta", "lora", "ptuning"])
def test_gradient_checkpointing_trains_the_same(tiny_models, glue_dir, tmp_path, method, monkeypatch):
    """Recomputed activations (same dropout masks) give the same training, only with less memory."""
    import transformers.modeling_utils as mu

    calls = []
    real = mu.checkpoint
    monkeypatch.setattr(mu, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    results = []
    for checkpointing in ("false", "true"):
        assert not calls  # nothing checkpointed in the first run
        uri = f"sqlite:///{tmp_path / f'gc-{checkpointing}.db'}"
        assert (
            main(
                [
                    "run",
                    "--method",
                    method,
                    "--model",
                    tiny_models["bert"],
                    "--task",
                    "rte",
                    "--data-dir",
                    str(glue_dir),
                    "--epochs",
                    "2",
                    "--batch-size",
                    "8",
                    "--lr",
                    "1e-2",
                    "--set",
                    "log_every=1",
                    "--set",
                    f"gradient_checkpointing={checkpointing}",
                    "--output-dir",
                    str(tmp_path / "o"),
                    "--tracking-uri",
                    uri,
                    "--no-progress",
                ]
            )
            == 0
        )
        (run,) = all_runs(uri)
        results.append(run.data.metrics)
    assert calls  # the second run did recompute its layers
    assert results[1]["train_loss"] == pytest.approx(results[0]["train_loss"], rel=1e-5)
    assert results[1]["best_dev_accuracy"] == results[0]["best_dev_accuracy"]


def test_select_on_holdout_leaves_dev_for_reporting(tiny_models, glue_dir, tmp_path, uri, capsys):
    """select_on=holdout: the best epoch is picked on a fixed share of train; dev is only reported."""
    from mlflow.tracking import MlflowClient

    assert (
        main(
            [
                "run",
                "--method",
                "lora",
                "--model",
                tiny_models["bert"],
                "--task",
                "rte",
                "--data-dir",
                str(glue_dir),
                "--epochs",
                "4",
                "--batch-size",
                "4",
                "--lr",
                "5e-2",
                "--set",
                "select_on=holdout",
                "--set",
                "holdout_fraction=0.25",
                "--output-dir",
                str(tmp_path),
                "--tracking-uri",
                uri,
                "--experiment",
                "holdout",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "18 train examples, 6 holdout, 12 dev" in capsys.readouterr().out  # 24 = 18 + 6
    c = MlflowClient(uri)
    (run,) = c.search_runs([c.get_experiment_by_name("holdout").experiment_id])
    assert run.data.tags["selected_on"] == "holdout"
    hold = {m.step: m.value for m in c.get_metric_history(run.info.run_id, "holdout_accuracy")}
    dev = {m.step: m.value for m in c.get_metric_history(run.info.run_id, "dev_accuracy")}
    assert len(hold) == 4 and set(hold) == set(dev)
    best_step = min(
        s for s, v in hold.items() if v == max(hold.values())
    )  # earliest of the best holdout scores
    assert run.data.metrics["best_holdout_accuracy"] == hold[best_step]
    assert run.data.metrics["best_dev_accuracy"] == dev[best_step]  # dev read at that epoch, not maximised


def test_progress_bars_stay_off_a_redirected_stderr(tiny_models, glue_dir, tmp_path, uri, capsys):
    """Progress is on by default, but a log file (not a terminal) gets no carriage-return frames."""
    argv = ["run", "--method", "head", "--model", tiny_models["bert"], "--task", "rte"]
    argv += ["--data-dir", str(glue_dir), "--max-steps", "3", "--batch-size", "4"]
    assert main([*argv, "--tracking-uri", uri, "--output-dir", str(tmp_path / "out")]) == 0
    assert "\r" not in capsys.readouterr().err


@pytest.mark.parametrize("method, per_token", [("head", 4), ("full", 6)])
def test_a_run_logs_its_training_tokens_and_estimated_flops(
    tiny_models, glue_dir, tmp_path, uri, method, per_token
):
    """train_tokens: every real (non-pad) token trained on; train_flops: 6N per token with weight gradients,
    4N with a frozen backbone (N: the encoder's parameters without embeddings, counted here)."""
    from mlflow.tracking import MlflowClient
    from transformers import AutoModel

    from bench.data import load_examples
    from bench.models import load_tokenizer
    from bench.tasks import get_task

    argv = [
        "run",
        "--method",
        method,
        "--model",
        tiny_models["bert"],
        "--task",
        "rte",
        "--data-dir",
        str(glue_dir),
    ]
    argv += ["--epochs", "2", "--batch-size", "4", "--tracking-uri", uri, "--output-dir", str(tmp_path / "o")]
    assert main([*argv, "--experiment", f"flops-{method}", "--no-progress"]) == 0
    c = MlflowClient(uri)
    (run,) = c.search_runs([c.get_experiment_by_name(f"flops-{method}").experiment_id])
    task = get_task("rte")
    ex = load_examples(task, "train", str(glue_dir))
    tok = load_tokenizer(tiny_models["bert"], task)
    lengths = [len(tok(a, b, truncation=True, max_length=128)["input_ids"]) for a, b in ex.texts]
    n = sum(p.numel() for name, p in AutoModel.from_pretrained(tiny_models["bert"]).named_parameters()
            if not name.startswith("embeddings"))  # fmt: skip
    assert run.data.metrics["train_tokens"] == 2 * sum(lengths)
    assert run.data.metrics["train_flops"] == pytest.approx(per_token * n * 2 * sum(lengths))


FLUSH_PROBE = """
import sys, torch
from bench.device import flush_denormals
flush_denormals(sys.argv[1] == "on")
x = torch.full((1 << 22,), 1e-39)  # a denormal float32, over enough elements to use every pool thread
print(int(torch.count_nonzero(x * 1.0)))
"""


@pytest.mark.slow  # two fresh interpreters importing bench
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="flush-to-zero is x86's (SSE3)")
def test_denormals_are_flushed_in_every_thread_when_asked():
    """1e-39 * 1.0 is 1e-39 under IEEE arithmetic and 0 with denormals flushed, in the pool threads too."""
    for setting, nonzero in (("on", 0), ("off", 1 << 22)):
        out = subprocess.run([sys.executable, "-c", FLUSH_PROBE, setting], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert int(out.stdout.strip()) == nonzero, setting
