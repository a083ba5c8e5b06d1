"""Paper presets: resolved per (method, model or family, task) with the source of every value, printed by
--dry-run without loading anything, a one-line error naming what exists, and a sweep centred on one."""

import subprocess
import sys

import pytest

from bench.cli import main
from bench.presets import load_entries, resolve
from sweeps.space import centre


def test_every_value_has_a_source_and_every_preset_is_valid(tiny_models):
    from bench.resolve import build_config

    entries = load_entries()
    assert {e.method for e in entries} >= {"pasta", "lora", "bitfit", "ptuning", "adapter", "full"}
    for e in entries:
        assert e.source.strip() and e.values
        for task in e.tasks or ("rte",):  # every key and value is a valid option for each task it names
            build_config(e.values, {"method": e.method, "task": task})


@pytest.mark.slow  # trains every preset's selection case
def test_presets_select_the_best_epoch_on_the_metric_their_table_reports():
    """PASTA's Table 2 (BERT-large) reports MRPC/QQP F1 and STS-B Spearman, Table 3 (RoBERTa-large)
    MRPC/QQP accuracy and STS-B Pearson: each method of a table picks its best epoch on that metric."""
    table2 = {"mrpc": "f1", "qqp": "f1", "stsb": "spearman", "rte": None}
    table3 = {"mrpc": "accuracy", "qqp": "accuracy", "stsb": "pearson", "cola": None}
    for method in ("pasta", "full", "adapter", "bitfit", "ptuning", "diffprune"):
        for task, metric in table2.items():
            assert resolve("paper", method, "bert-large-cased", task)[0].get("select_metric") == metric
    for method in ("pasta", "full", "lora"):
        for task, metric in table3.items():
            assert resolve("paper", method, "roberta-large", task)[0].get("select_metric") == metric


def test_resolution_is_specific_over_general():
    values, sources = resolve("paper", "lora", "roberta-large", "sst2")
    assert (values["lr"], values["batch_size"], values["weight_decay"]) == (4e-4, 64, 0.1)
    assert values["method_options"] == {"r": 8, "alpha": 16, "dropout": 0.0}
    assert "roberta_large_sst2.sh" in sources["batch_size"] and "roberta_large_sst2.sh" in sources["lr"]
    values, sources = resolve("paper", "pasta", "bert-large-cased", "conll2003")
    assert (values["lr"], values["batch_size"], values["epochs"], values["weight_decay"]) == (
        3e-3,
        16,
        100,
        0.0,
    )
    assert "CoNLL03.sh" in sources["lr"] and "main_glue.py" in sources["weight_decay"]


def test_dry_run_prints_sources_and_creates_nothing(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert (
        main(
            [
                "run",
                "--preset",
                "paper",
                "--method",
                "ptuning",
                "--model",
                "roberta-large",
                "--task",
                "conll2003",
                "--set",
                "epochs=2",
                "--tracking-uri",
                uri,
                "--output-dir",
                str(tmp_path / "out"),
                "--dry-run",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "lr: 0.03" in out and "run_conll03_roberta.sh" in out
    assert "epochs: 2.0" in out and "# --set" in out  # the user's value wins and says so
    assert "position_shift: true" in out and "prefix_length: 11" in out
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--method", "lora", "--model", "bert-large-cased", "--task", "rte"],
            "no 'paper' preset for lora on bert-large-cased",
        ),
        (
            ["--method", "pasta", "--model", "bert-large-cased", "--task", "rte", "--preset", "papr"],
            "unknown preset 'papr'",
        ),
    ],
)
def test_missing_preset_is_one_line(argv, message, capsys):
    argv = ["run", "--preset", "paper", *argv] if "--preset" not in argv else ["run", *argv]
    assert main([*argv, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_centred_space():
    space = {
        "lr": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
        "batch_size": {"type": "categorical", "choices": [16]},
        "method.r": {"type": "int", "low": 2, "high": 64},
    }
    out, fixed = centre(
        space, {"lr": 3e-4, "batch_size": 32, "epochs": 10, "method_options": {"r": 8, "alpha": 16}}
    )
    assert out["lr"]["low"] == pytest.approx(1e-4) and out["lr"]["high"] == pytest.approx(9e-4)
    assert out["batch_size"]["choices"] == [16, 32] and (out["method.r"]["low"], out["method.r"]["high"]) == (
        4,
        12,
    )
    assert fixed == {"epochs": 10, "method_options": {"alpha": 16}}


@pytest.mark.slow
def test_presets_listing_and_closed_pipe():
    proc = subprocess.run(
        f"{sys.executable} -m bench.cli presets | head -1", shell=True, capture_output=True, text=True
    )
    assert proc.stdout.startswith("method") and "Traceback" not in proc.stderr and proc.stderr == ""


@pytest.mark.slow
def test_sweep_centred_on_a_preset(tiny_models, glue_dir, tmp_path):
    import optuna

    from sweeps import driver

    space = tmp_path / "space.yaml"
    space.write_text(
        "lr: {type: float, low: 1e-6, high: 1e-3, log: true}\nepochs: {type: categorical, choices: [1]}\n"
    )
    base = {
        "data_dir": str(glue_dir),
        "output_dir": str(tmp_path / "runs"),
        "tracking_uri": f"sqlite:///{tmp_path}/m.db",
        "batch_size": 8,
    }
    storage = f"sqlite:///{tmp_path}/s.db"
    name = driver.create(
        "full", tiny_models["bert"], "rte", base, str(space), storage, 2, preset="paper", echo=lambda *a: None
    )
    attrs = optuna.load_study(study_name=name, storage=storage).user_attrs
    assert attrs["space"]["lr"]["low"] == pytest.approx(2e-5 / 3) and attrs["space"]["epochs"]["choices"] == [
        1,
        3,
    ]
    assert attrs["base"]["warmup_ratio"] == 0.1 and attrs["base"]["batch_size"] == 8  # the user's --set wins
    assert attrs["base"]["tags"] == {"preset": "paper"}


def test_every_roberta_large_lora_task_has_its_scripts_values():
    """microsoft/LoRA examples/NLU/roberta_large_<task>.sh, 8 GPUs: (per-GPU batch x 8, lr, epochs, max
    length),
    transcribed here; no GLUE task falls back to bench's defaults."""
    scripts = {
        "mnli": (32, 3e-4, 10, 128),
        "sst2": (64, 4e-4, 10, 512),
        "mrpc": (32, 3e-4, 20, 512),
        "cola": (32, 3e-4, 20, 128),
        "qnli": (32, 2e-4, 10, 512),
        "qqp": (32, 3e-4, 20, 512),
        "rte": (64, 4e-4, 20, 512),
        "stsb": (32, 3e-4, 10, 128),
    }
    for task, expected in scripts.items():
        values, sources = resolve("paper", "lora", "roberta-large", task)
        assert (values["batch_size"], values["lr"], values["epochs"], values["max_length"]) == expected, task
        assert all(
            f"roberta_large_{task}.sh" in sources[k] for k in ("batch_size", "lr", "epochs", "max_length")
        )
