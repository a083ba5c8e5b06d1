"""Sweeps: many workers on one study (local SQLite store and PostgreSQL), SIGKILL + restart, pruning,
finalize, bad spaces."""

import signal
import statistics
import subprocess
import sys
import time
import types

import optuna
import pytest
from mlflow.tracking import MlflowClient

from bench.cli import main
from bench.errors import BenchError
from sweeps import driver
from sweeps import study as sweep_study
from sweeps.space import load_space
from sweeps.study import status

from support import ENV, SPACE, child_runs, make_study, seeded_store, space_file, worker


@pytest.mark.slow
def test_three_workers_share_one_study(tiny_models, glue_dir, tmp_path):
    """Local SQLite storage; the same on PostgreSQL with an MLflow server: tests/test_shared_tracking.py."""
    storage = None
    n = 6
    name = make_study(tiny_models, glue_dir, tmp_path, storage, n, SPACE, pruner="none")
    procs = [worker(name, storage, tmp_path) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    study = sweep_study.Study(name, storage, str(tmp_path / "runs")).optuna
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == n
    run_ids = [t.user_attrs["mlflow_run_id"] for t in complete]
    assert len(set(run_ids)) == n  # none duplicated
    runs = child_runs(tmp_path, study)
    parent = study.user_attrs["mlflow_parent_run_id"]
    assert {r.info.run_id for r in runs if r.info.status == "FINISHED"} == set(run_ids)
    assert all(r.data.tags["mlflow.parentRunId"] == parent for r in runs)
    assert all(r.info.status != "RUNNING" for r in runs)
    assert sorted(int(r.data.tags["trial"]) for r in runs if r.info.status == "FINISHED") == sorted(
        t.number for t in complete
    )


@pytest.mark.slow
def test_sigkill_mid_trial_then_restart(tiny_models, glue_dir, tmp_path):
    n = 3
    name = make_study(
        tiny_models,
        glue_dir,
        tmp_path,
        None,
        n,
        {"lr": {"type": "categorical", "choices": [1e-3]}},
        pruner="none",
        epochs=400,
    )
    st = sweep_study.open_storage(sweep_study.storage_url(None, str(tmp_path / "runs")), heartbeat=1)
    p = worker(name, None, tmp_path)
    deadline = time.time() + 180
    while time.time() < deadline:  # wait until a trial is training (its MLflow run exists)
        running = [
            t
            for t in optuna.load_study(study_name=name, storage=st).trials
            if t.state.name == "RUNNING" and "mlflow_run_id" in t.user_attrs
        ]
        if running:
            break
        time.sleep(0.5)
    else:
        pytest.fail("no trial started")
    time.sleep(1)
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed = running[0]
    # Restart with a budget of short trials: the killed trial must be failed, its run closed, retried.
    study = optuna.load_study(study_name=name, storage=st)
    base = dict(study.user_attrs["base"], epochs=1)
    study.set_user_attr("base", base)
    p = worker(name, None, tmp_path)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    study = sweep_study.load(name, st)
    states = {t.number: t.state.name for t in study.trials}
    assert states[killed.number] == "FAIL"
    assert sum(s == "COMPLETE" for s in states.values()) == n
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retried and retried[0].state.name == "COMPLETE"
    runs = {r.info.run_id: r for r in child_runs(tmp_path, study)}
    lost = runs[killed.user_attrs["mlflow_run_id"]]
    assert lost.info.status == "KILLED" and lost.data.tags["state"] == "lost"
    assert all(r.info.status != "RUNNING" for r in runs.values())


@pytest.mark.slow
def test_pruning_stops_hopeless_trials(tiny_models, tmp_path):
    # A task the tiny model can learn: "good" -> 1, "bad" -> 0.
    d = tmp_path / "SST-2"
    d.mkdir()
    words = "the a cat dog sat ran on mat".split()
    for split, size in (("train", 64), ("dev", 16)):
        rows = ["sentence\tlabel"] + [
            f"{words[i % 8]} {words[(i * 3) % 8]} {'good' if i % 2 else 'bad'}\t{i % 2}" for i in range(size)
        ]
        (d / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    space = {"lr": {"type": "categorical", "choices": [3e-3, 1e-9]}}  # 1e-9 can learn nothing
    name = make_study(
        tiny_models, tmp_path, tmp_path, None, 4, space, task="sst2", epochs=8, warmup_ratio=0.0
    )
    st = sweep_study.open_storage(sweep_study.storage_url(None, str(tmp_path / "runs")))
    study = optuna.load_study(study_name=name, storage=st)
    for lr in (3e-3, 3e-3, 1e-9, 1e-9, 3e-3, 3e-3):
        study.enqueue_trial({"lr": lr})
    said = []
    driver.work(name, None, output_dir=str(tmp_path / "runs"), echo=said.append)
    study = sweep_study.load(name, st)
    hopeless = [t for t in study.trials if t.params["lr"] == 1e-9]
    # The console: one line per trial, with the count, what was sampled and the result (or the pruning).
    assert any(
        line.startswith("trial 0 (1/4 complete) full lr=0.003 -> ") and "(best " in line for line in said
    )
    assert any(line.startswith("trial 2 ") and "-> pruned at epoch " in line for line in said)
    assert hopeless and all(t.state.name == "PRUNED" for t in hopeless)
    assert all(len(t.intermediate_values) < 8 for t in hopeless)  # stopped early
    good = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(good) == 4 and all(t.params["lr"] == 3e-3 for t in good)
    assert max(t.value for t in good) > 0.9
    runs = {r.info.run_id: r for r in child_runs(tmp_path, study)}
    for t in hopeless:
        run = runs[t.user_attrs["mlflow_run_id"]]
        assert run.info.status == "KILLED" and run.data.tags["state"] == "pruned"

    # Runs compare at a glance: distinct names that sort by trial; the parent carries numbers, not strings.
    names = sorted(r.info.run_name for r in child_runs(tmp_path, study))
    own = [
        t.number for t in study.trials if not {"surplus", "reused_run"} & set(t.user_attrs)
    ]  # reuse: no run
    assert len(own) >= 3 and names == [f"t{i:03d}-s1-full-tiny-bert-sst2" for i in own]
    from mlflow.tracking import MlflowClient

    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = c.get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED"  # the budget is done
    assert parent.data.metrics["trials_complete"] == 4 and parent.data.metrics["trials_budget"] == 4
    assert parent.data.metrics["trials_pruned"] == len(hopeless)
    assert parent.data.metrics["best_value"] == max(t.value for t in good)

    summary = driver.finalize(name, None, 2, output_dir=str(tmp_path / "runs"), echo=lambda *a: None)
    assert summary["n"] == 2 and summary["params"] == {"lr": 3e-3}
    finals = [r for r in child_runs(tmp_path, study) if r.data.tags["phase"] == "final"]
    assert sorted(r.data.tags["seed"] for r in finals) == ["1", "2"]
    assert sorted(r.info.run_name for r in finals) == [
        "final-s1-full-tiny-bert-sst2",
        "final-s2-full-tiny-bert-sst2",
    ]
    # Seed 1 is the search seed: the best trial already trained that configuration and seed, so final seed 1
    # is its run recorded again (metrics, params, adapter), not trained twice; seed 2 is trained.
    by_seed = {r.data.tags["seed"]: r for r in finals}
    best = study.best_trial
    assert by_seed["1"].data.tags["reused_run"] == best.user_attrs["mlflow_run_id"]
    assert "reused_run" not in by_seed["2"].data.tags
    assert summary["values"][0] == best.value
    trial_run = c.get_run(best.user_attrs["mlflow_run_id"])
    assert (
        by_seed["1"].data.metrics == trial_run.data.metrics
        and by_seed["1"].data.params == trial_run.data.params
    )
    assert by_seed["1"].data.tags["phase"] == "final" and by_seed["1"].data.tags["best_trial"] == str(
        best.number
    )
    assert {a.path for a in c.list_artifacts(by_seed["1"].info.run_id)} >= {"adapter", "config.yaml"}
    metrics = c.get_run(study.user_attrs["mlflow_parent_run_id"]).data.metrics
    assert metrics["final_mean"] == pytest.approx(summary["mean"]) and metrics["final_n"] == 2
    again = driver.finalize(name, None, 2, output_dir=str(tmp_path / "runs"), echo=lambda *a: None)
    assert again["values"] == summary["values"]
    assert len([r for r in child_runs(tmp_path, study) if r.data.tags["phase"] == "final"]) == 2  # skipped
    shown = status(name, None, str(tmp_path / "runs"))  # the budget is done: "best", and the final seeds
    mean, std = statistics.mean(summary["values"]), statistics.stdev(summary["values"])
    assert "best: trial" in shown and "best so far" not in shown
    assert f"final: {summary['metric']} {mean:.4f} ± {std:.4f} (sample std) over 2 seeds" in shown


@pytest.mark.slow
def test_nan_trial_fails_with_reason_and_sweep_goes_on(tiny_models, glue_dir, tmp_path):
    name = make_study(
        tiny_models,
        glue_dir,
        tmp_path,
        None,
        2,
        {"lr": {"type": "categorical", "choices": [1e-3, 1e30]}},
        pruner="none",
        epochs=3,
        batch_size=4,
    )
    st = sweep_study.open_storage(sweep_study.storage_url(None, str(tmp_path / "runs")))
    study = optuna.load_study(study_name=name, storage=st)
    for lr in (1e30, 1e-3, 1e-3):
        study.enqueue_trial({"lr": lr})
    said = []
    driver.work(name, None, output_dir=str(tmp_path / "runs"), echo=said.append)
    assert (
        optuna.logging.get_verbosity() == optuna.logging.ERROR
    )  # Optuna's warning + traceback is silenced ...
    assert any(line.startswith("trial 0 failed: NonFiniteLoss") for line in said)  # ... ours is one line
    study = sweep_study.load(name, st)
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    run = {r.info.run_id: r for r in child_runs(tmp_path, study)}[study.trials[0].user_attrs["mlflow_run_id"]]
    assert run.info.status == "FAILED" and "loss became" in run.data.tags["error"]


@pytest.mark.parametrize(
    "space, message",
    [
        ({"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3}}, "bad key 'learning_rate'"),
        ({"lr": {"type": "float", "low": 1e-3, "high": 1e-4}}, "bad key 'lr': needs numbers low < high"),
        ({"lr": {"type": "gaussian"}}, "bad key 'lr': needs a mapping with type"),
        (
            {"method.rank": {"type": "categorical", "choices": [4]}},
            "bad key 'method.rank': method lora has no option",
        ),
        ({"seed": {"type": "categorical", "choices": [1, 2]}}, "bad key 'seed'"),
    ],
)
def test_malformed_space_names_the_bad_key(tmp_path, space, message):
    with pytest.raises(BenchError, match=message):
        load_space(space_file(tmp_path, space), "lora")


def test_every_method_has_a_valid_space():
    """A YAML file for each hand-written method; a peft tuner's space is derived (lr around its default, its
    knob) and validated the same way."""
    from methods import REGISTRY
    from sweeps.space import default_space_file, method_space

    for name, method in REGISTRY.items():
        assert (default_space_file(name) is None) == bool(method.peft_tuner), name
        space = method_space(name)
        assert "lr" in space, name
        if method.peft_tuner:
            lo, hi = space["lr"]["low"], space["lr"]["high"]
            assert lo < method.default_lr < hi and space["lr"]["log"]
            if method.knob:
                assert space[f"method.{method.knob}"]["choices"] == list(method.knob_values)


def test_sweep_cli_bad_input(tmp_path, capsys):
    from bench.cli import main

    assert main(["sweep", "status", "nope", "--output-dir", str(tmp_path)]) == 2
    assert "no study 'nope' in this storage (choices: none)" in capsys.readouterr().err
    assert main(["sweep", "ls", "--storage", "redis://x"]) == 2
    assert "unsupported sweep storage" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_trap_corrected_command_is_a_new_study_and_named_resume_shows_the_difference(
    tiny_models, glue_dir, tmp_path, capsys
):
    """A study created without --data-dir and the corrected command get different names; resuming a named
    study with other options is a one-line error showing the difference, unless --resume-anyway."""
    from bench.cli import main

    space = space_file(tmp_path, {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}})
    common = [
        "sweep",
        "create",
        "--method",
        "lora",
        "--model",
        tiny_models["bert"],
        "--task",
        "rte",
        "--space",
        space,
        "--output-dir",
        str(tmp_path / "runs"),
        "--tracking-uri",
        f"sqlite:///{tmp_path}/m.db",
    ]
    assert main(common) == 0
    first = capsys.readouterr().out
    assert main([*common, "--data-dir", str(glue_dir)]) == 0
    second = capsys.readouterr().out
    assert "created study" in first and "created study" in second and "resuming" not in second
    assert main([*common, "--name", "mine"]) == 0
    capsys.readouterr()
    assert main([*common, "--name", "mine", "--data-dir", str(glue_dir), "--trials", "5"]) == 2
    err = capsys.readouterr().err
    assert (
        "study mine exists with other options" in err
        and "data_dir" in err
        and "n_trials: stored 20, given 5" in err
    )
    assert err.count("\n") == 1
    assert main([*common, "--name", "mine", "--data-dir", str(glue_dir), "--resume-anyway"]) == 0
    assert "resuming it with its stored options" in capsys.readouterr().out


@pytest.mark.slow
def test_launch_local_workers_through_submitit(tiny_models, glue_dir, tmp_path, capsys):
    """`bench sweep launch --executor local`: two submitit jobs complete the study's budget exactly; refused
    requests (no SLURM here, a GPU this machine lacks, zero workers) submit nothing."""
    from bench.cli import main

    name = make_study(tiny_models, glue_dir, tmp_path, None, 4, SPACE, pruner="none")
    out = ["--output-dir", str(tmp_path / "runs")]
    for argv, message in (
        (["--executor", "slurm"], "no SLURM scheduler on this machine"),
        (["--gpus-per-worker", "1"], "this machine has 0 GPU(s)"),
        (["--workers", "0"], "--workers 0 must be at least 1"),
    ):
        assert main(["sweep", "launch", name, "--workers", "2", *argv, *out]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "runs" / "launch").exists()  # nothing was submitted
    assert (
        main(["sweep", "launch", name, "--workers", "2", "--executor", "local", "--heartbeat", "2", *out])
        == 0
    )
    said = capsys.readouterr().out
    assert "submitted 2 workers" in said and said.count(": ran ") == 2
    study = sweep_study.Study(name, None, str(tmp_path / "runs")).optuna
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 4
    assert list((tmp_path / "runs" / "launch" / name).glob("*_log.out"))  # submitit's per-job logs


@pytest.mark.slow
def test_work_with_worker_processes_packs_one_machine(tiny_models, glue_dir, tmp_path, capsys):
    from bench.cli import main

    name = make_study(tiny_models, glue_dir, tmp_path, None, 3, SPACE, pruner="none")
    assert (
        main(
            [
                "sweep",
                "work",
                name,
                "--workers",
                "2",
                "--heartbeat",
                "2",
                "--output-dir",
                str(tmp_path / "runs"),
            ]
        )
        == 0
    )
    assert "2 worker processes ran 3 trials" in capsys.readouterr().out
    study = sweep_study.Study(name, None, str(tmp_path / "runs")).optuna
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 3


@pytest.mark.slow  # a sweep with final seeds, run twice
def test_a_space_without_lr_reuses_finished_trials_and_final_seeds(tiny_models, glue_dir, tmp_path):
    # lr is neither searched nor fixed: every configuration resolves it to the method's default before it is
    # hashed, so the lookup of a finished run and the run's own tag use one hash.
    name = make_study(
        tiny_models,
        glue_dir,
        tmp_path,
        None,
        2,
        {"warmup_ratio": {"type": "categorical", "choices": [0.0]}},
        pruner="none",
        max_steps=2,
        batch_size=4,
    )
    st = sweep_study.open_storage(sweep_study.storage_url(None, str(tmp_path / "runs")))
    said = []
    driver.work(name, None, output_dir=str(tmp_path / "runs"), echo=said.append)
    study = sweep_study.load(name, st)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert "reused_run" in study.trials[1].user_attrs  # the same configuration and seed: not trained again
    assert study.trials[1].value == study.trials[0].value
    runs = [r for r in child_runs(tmp_path, study) if r.data.tags["phase"] == "trial"]
    assert len(runs) == 1 and float(runs[0].data.params["lr"]) == 2e-5  # full FT's default, logged as used
    assert runs[0].data.tags["config_hash"] == study.trials[0].user_attrs["config_hash"]

    first = driver.finalize(name, None, 1, output_dir=str(tmp_path / "runs"), echo=lambda *a: None)
    said = []
    again = driver.finalize(name, None, 1, output_dir=str(tmp_path / "runs"), echo=said.append)
    assert said[0].startswith("final seed 1: already finished") and again["values"] == first["values"]
    assert len([r for r in child_runs(tmp_path, study) if r.data.tags["phase"] == "final"]) == 1


@pytest.mark.slow
def test_a_compute_budget_ends_the_search_and_reports_say_what_was_used(
    tiny_models, glue_dir, tmp_path, capsys
):
    space = {"lr": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True}}
    base = {
        "data_dir": str(glue_dir),
        "output_dir": str(tmp_path / "runs"),
        "batch_size": 8,
        "max_steps": 2,
        "tracking_uri": seeded_store(tmp_path / "mlflow.db"),
    }
    name = driver.create(
        "full",
        tiny_models["bert"],
        "rte",
        base,
        space_file(tmp_path, space),
        None,
        10,
        seeds_final=1,
        pruner="none",
        echo=lambda *a: None,
        budget_seconds=0.01,
    )
    driver.work(name, None, output_dir=str(tmp_path / "runs"), echo=lambda *a: None)
    study = sweep_study.Study(name, None, str(tmp_path / "runs")).optuna
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    spent = sum(t.user_attrs["seconds"] for t in study.trials)
    # any trial takes more than 10 ms: the first one spends the budget, the other nine never start
    assert len(done) == 1 and spent >= 0.01
    run = MlflowClient(base["tracking_uri"]).get_run(study.user_attrs["mlflow_parent_run_id"])
    assert run.info.status == "FINISHED" and run.data.metrics["seconds_spent"] == pytest.approx(spent)
    assert run.data.params["budget.seconds"] == "0.01"
    assert f"budget: 1/10 complete trials, {spent:,.0f}/0.01 s of trials" in status(
        name, None, str(tmp_path / "runs")
    )
    driver.finalize(name, None, 1, output_dir=str(tmp_path / "runs"), echo=lambda *a: None)
    assert (
        main(["report", "table", "--model", tiny_models["bert"], "--tracking-uri", base["tracking_uri"]]) == 0
    )
    # the trial's estimated FLOPs too: 6N per real token for full FT (N: the encoder without embeddings)
    flops = sum(t.user_attrs["flops"] for t in study.trials)
    assert flops > 0 and run.data.metrics.get("flops_spent", flops) == pytest.approx(flops)
    used = f"({spent:,.0f} s, {flops / 1e15:.3g} PFLOP est. of trials used)"
    assert f"Sweep budgets: Full FT: 10 trials or 0.01 s {used}" in capsys.readouterr().out


@pytest.mark.slow
def test_two_finalize_commands_at_once_train_each_seed_once(tiny_models, glue_dir, tmp_path):
    """Started together, they take turns per seed: one trains it, the other finds it finished."""
    name = make_study(
        tiny_models,
        glue_dir,
        tmp_path,
        None,
        1,
        {"warmup_ratio": {"type": "categorical", "choices": [0.0]}},
        pruner="none",
        max_steps=20,
        batch_size=4,
    )
    driver.work(name, None, output_dir=str(tmp_path / "runs"), echo=lambda *a: None)
    cmd = [sys.executable, "-m", "bench.cli", "sweep", "finalize", name, "--seeds", "2"]
    cmd += ["--output-dir", str(tmp_path / "runs")]
    procs = [subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    study = sweep_study.Study(name, None, str(tmp_path / "runs")).optuna
    finals = [r for r in child_runs(tmp_path, study) if r.data.tags["phase"] == "final"]
    assert sorted(r.data.tags["seed"] for r in finals) == ["1", "2"]  # not four
    assert sum(o[0].count("already finished") for o in outs) == 2


def test_a_study_keeps_the_defaults_it_was_created_with(tiny_models, glue_dir, tmp_path):
    """Options bench added over time (bench.config.ADDED_FIELDS) that a study's base leaves unset train at the
    default of the day the study was created, whatever the defaults are when it resumes; a study made before
    that was recorded trains at their earlier behaviour, as its runs count."""
    name = make_study(tiny_models, glue_dir, tmp_path, None, 1, SPACE, max_steps=1)
    study = sweep_study.Study(name, None, output_dir=str(tmp_path / "runs"))
    assert (study.attrs["defaults"]["dropout_draws"], study.attrs["defaults"]["last_layer_tokens"]) == (
        "fast",
        "head",
    )  # today's defaults, recorded
    defaults = {**study.attrs["defaults"], "dropout_draws": "torch"}  # as if created when torch's was default
    study.optuna.set_user_attr("defaults", defaults)
    cfg = driver._run_config(study, {}, 1, "trial", {})
    assert (cfg.dropout_draws, cfg.last_layer_tokens, cfg.padding_tokens) == ("torch", "head", "skip")
    old = types.SimpleNamespace(  # a study from before the record: no defaults among its attributes
        name=name,
        attrs={k: v for k, v in study.attrs.items() if k != "defaults"},
        tracking_uri=study.tracking_uri,
    )
    cfg = driver._run_config(old, {}, 1, "trial", {})
    assert (cfg.dropout_draws, cfg.last_layer_tokens, cfg.padding_tokens) == ("torch", "all", "compute")
