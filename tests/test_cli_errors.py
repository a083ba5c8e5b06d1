"""Every bad input: one line naming the value (and the choices), exit code 2, no traceback, and
no MLflow run left behind RUNNING."""

import os
import subprocess
import sys

import pytest

from bench.cli import main

from support import all_runs


def _run(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def base(tiny_models, glue_dir, tmp_path, uri, **over):
    args = {
        "--method": "full",
        "--model": tiny_models["bert"],
        "--task": "rte",
        "--data-dir": str(glue_dir),
        "--max-steps": "1",
        "--output-dir": str(tmp_path / "out"),
        "--tracking-uri": uri,
    }
    args.update(over)
    argv = ["run", "--no-progress"]
    for k, v in args.items():
        if v is not None:
            argv += [k, v]
    return argv


@pytest.mark.parametrize(
    "over, expected",
    [
        (
            {"--method": "pasat"},
            "unknown method 'pasat' (choices: adalora, adamss, adapter, beft, bitfit, boft, c3a, deft, "
            "delora, did, diffprune, dora, fourierft, frod, full, glora, gralora, head, hira, hra, ia3, "
            "lily, ln_tuning, loha, lokr, lora, miss, oft, osf, pasta, peanut, prompt_tuning, psoft, "
            "ptuning, pvera, randlora, road, said, shira, supertuning, tinylora, unilora, vblora, vera, "
            "waveft)",
        ),
        (
            {"--task": "rtee"},
            "unknown task 'rtee' (choices: cola, conll2003, mnli, mrpc, qnli, qqp, rte, sst2, stsb)",
        ),
        ({"--model": "robrta-large"}, "unknown model 'robrta-large' (choices: "),
        ({"--data-dir": "/nonexistent/glue"}, "data directory not found: /nonexistent/glue"),
        ({"--task": "qnli"}, "no qnli files"),
        ({"--set": "lr"}, "malformed --set 'lr': expected key=value"),
        ({"--set": "learning_rate=1"}, "unknown option 'learning_rate' (choices: "),
        ({"--set": "method.rank=4", "--method": "lora"}, "unknown option for method lora: 'rank' (choices: "),
        ({"--set": "precision=fp8"}, "unknown precision 'fp8' (choices: auto, bf16, fp16, fp32)"),
        ({"--set": "compile=maybe"}, "option compile='maybe' is not a valid bool: use true or false"),
        (
            {"--tracking-uri": "postgresql://nobody@127.0.0.1:1/none"},
            "tracking URI postgresql://***@127.0.0.1:1/none is unreachable",
        ),
        ({"--tracking-uri": "ftp://x"}, "unsupported tracking URI scheme 'ftp'"),
    ],
)
def test_bad_input_one_line_exit_2(tiny_models, glue_dir, tmp_path, tracking_uri, capsys, over, expected):
    code, err = _run(base(tiny_models, glue_dir, tmp_path, tracking_uri, **over), capsys)
    assert code == 2
    assert err.count("\n") == 0 and expected in err, err
    assert "Traceback" not in err
    if os.path.exists(tracking_uri.split(":///")[1]):
        assert all_runs(tracking_uri) == []  # nothing created, so nothing half-written


def test_bad_files_one_line_exit_2(tiny_models, tmp_path, tracking_uri, capsys):
    d = tmp_path / "RTE"
    d.mkdir()
    (d / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tperhaps\n")
    (d / "dev.tsv").write_text("index\tsentence1\tlabel\n0\ta\tentailment\n")
    code, err = _run(base(tiny_models, tmp_path, tmp_path, tracking_uri), capsys)
    assert code == 2 and "label 'perhaps' is not a rte label (choices: entailment, not_entailment)" in err
    (d / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n")
    code, err = _run(base(tiny_models, tmp_path, tmp_path, tracking_uri), capsys)
    assert code == 2 and "is empty" in err
    (d / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    code, err = _run(base(tiny_models, tmp_path, tmp_path, tracking_uri), capsys)
    assert code == 2 and "missing column 'sentence2'" in err


def test_unwritable_output_dir(tiny_models, glue_dir, tmp_path, tracking_uri, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, err = _run(
        base(tiny_models, glue_dir, tmp_path, tracking_uri, **{"--output-dir": str(blocker / "x")}), capsys
    )
    assert code == 2 and f"output directory {blocker / 'x'} is not writable" in err


def test_failure_during_training_ends_failed_not_running(
    tiny_models, glue_dir, tmp_path, tracking_uri, capsys
):
    # lr so large the loss overflows: the run must end FAILED with the reason as a tag.
    argv = base(
        tiny_models,
        glue_dir,
        tmp_path,
        tracking_uri,
        **{"--lr": "1e30", "--max-steps": "40", "--batch-size": "4"},
    )
    code, err = _run(argv, capsys)
    assert code == 1 and err.startswith("bench: run failed: loss became")
    runs = all_runs(tracking_uri)
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert "NonFiniteLoss" in runs[0].data.tags["error"]


@pytest.mark.slow
def test_subprocess_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "run", "--task", "nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "bench: error: unknown task 'nope' (choices: cola, conll2003, mnli, mrpc, qnli, qqp, rte, sst2, stsb)"
    ]


def test_tracking_uri_resolution(tmp_path, monkeypatch):
    from bench.tracking import redact, resolve_uri

    monkeypatch.chdir(tmp_path)
    assert resolve_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolve_uri("sqlite:///rel.db") == f"sqlite:///{tmp_path / 'rel.db'}"
    assert resolve_uri("runs.db") == f"sqlite:///{tmp_path / 'runs.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://u:secret@db/x")
    assert resolve_uri(None) == "postgresql://u:secret@db/x"
    assert redact(resolve_uri(None)) == "postgresql://u:***@db/x"


def test_a_dropped_sigterm_still_stops_training_at_the_next_step(
    tiny_models, glue_dir, tmp_path, monkeypatch
):
    """Python drops an exception raised inside a finalizer or weakref callback; the SIGTERM is remembered
    and the training loop raises it before its next step."""
    import bench.signals
    from bench.build import build_model, prepare_data
    from bench.config import RunConfig
    from bench.device import make_accelerator
    from bench.tasks import get_task
    from bench.train import train

    monkeypatch.setattr(bench.signals, "_terminated", False)  # so that it is False again after the test
    try:
        bench.signals.sigterm_as_interrupt(15, None)
    except KeyboardInterrupt:
        pass  # what "Exception ignored in ..." does to it
    task = get_task("rte")
    cfg = RunConfig(
        model=tiny_models["bert"],
        task="rte",
        data_dir=str(glue_dir),
        max_steps=3,
        cache_dir=str(tmp_path / "cache"),
    )
    built = build_model(cfg, task)
    prep = prepare_data(cfg, task, built)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        train(
            built.model,
            prep,
            cfg.replace(lr=1e-3),
            make_accelerator("fp32")[0],
            built.stored_names,
            lambda *a: None,
            progress=False,
        )


@pytest.mark.slow
def test_sigterm_mid_run_ends_killed_not_running(tiny_models, glue_dir, tmp_path, tracking_uri):
    import signal
    import time

    argv = base(tiny_models, glue_dir, tmp_path, tracking_uri, **{"--max-steps": None, "--epochs": "100000"})
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    all_runs(tracking_uri)  # create the store first: two processes migrating one SQLite file race
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            runs = all_runs(tracking_uri)
            if runs and runs[0].info.status == "RUNNING":
                break
            if proc.poll() is not None:
                pytest.fail(f"bench exited early: {proc.communicate()[1]}")
            time.sleep(0.5)
        else:
            pytest.fail("the run never started")
        time.sleep(2)  # mid-training
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "bench: interrupted" in err
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "KILLED" and "terminated (SIGTERM)" in run.data.tags["error"]


def test_every_option_has_help_and_every_command_an_example():
    import argparse

    from bench.cli import build_parser

    missing = []

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    if not (child.epilog or "").startswith("examples:"):
                        missing.append(" ".join([*path, name]) + ": no example")
                    walk(child, [*path, name])
            elif not action.help and action.dest != "help":
                missing.append(f"{' '.join(path)} {action.option_strings or action.dest}: no help")

    walk(build_parser(), [])
    assert missing == []


def test_example_config_in_the_readme_is_valid(capsys):
    from pathlib import Path

    from bench.cli import main

    example = Path(__file__).parent.parent / "examples" / "run.yaml"
    assert "--config examples/run.yaml" in (example.parent.parent / "README.md").read_text()
    assert main(["run", "--config", str(example), "--set", "lr=3e-4", "--seed", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "lora-minilm-mrpc-s2" in out and "method_options:" in out and "r: 8" in out
