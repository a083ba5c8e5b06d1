"""Reports that say whether a difference means anything: significance marks and per-seed scores in
`bench report table --stats`, degenerate runs marked (and left out when asked), and the expected best score
within k trials in `bench report budget`; on a store written with known values, and a run flagged from end
to end."""

import json

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats as sps

from bench import degenerate
from bench.cli import main
from reports.stats import expected_max, holm

from support import all_runs, seeded_store

RTE = "best_dev_glue_score"
RTE_MAIN = "best_dev_accuracy"  # RTE's main metric (the Pareto view's y axis): the same value


def log_run(c, exp, method, seed, score, phase="final", task="rte", model="m", extra_tags=None, seconds=10.0):
    run = c.create_run(
        exp,
        tags={
            "method": method,
            "model": model,
            "task": task,
            "seed": str(seed),
            "phase": phase,
            "config_hash": f"{method}-cfg",
            "study": f"{method}-study",
            **(extra_tags or {}),
        },
    )
    for k, v in {
        RTE: score,
        RTE_MAIN: score,
        "params_method": 1000,
        "params_backbone": 100000,
        "params_head": 10,
        "train_seconds": seconds,
    }.items():
        c.log_metric(run.info.run_id, k, v)
    c.set_terminated(run.info.run_id, "FINISHED")


SCORES = {  # per seed, as fractions: "full" is best, "lora" level with it, "bitfit" clearly below
    "full": [0.800, 0.804, 0.798, 0.802],
    "lora": [0.801, 0.797, 0.803, 0.799],
    "bitfit": [0.700, 0.702, 0.698, 0.701],
    "pasta": [0.60, 0.62],  # two seeds: cannot tell
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    uri = seeded_store(tmp_path_factory.mktemp("fair") / "mlflow.db")
    c = MlflowClient(uri)
    exp = c.create_experiment("bench-rte")
    for method, scores in SCORES.items():
        for seed, s in enumerate(scores, start=1):
            flagged = {degenerate.TAG: degenerate.MAJORITY} if method == "pasta" and seed == 2 else {}
            log_run(c, exp, method, seed, s, extra_tags=flagged)
    return uri


def test_table_stats_marks_ties_differences_and_too_few_seeds(store, capsys):
    assert (
        main(["report", "table", "--model", "m", "--tracking-uri", store, "--stats", "--format", "json"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    rows = {r["method"]: r for r in out["rows"]}
    assert rows["lora"]["RTE tied_with_best"] == "yes" and rows["bitfit"]["RTE tied_with_best"] == "no"
    assert (
        rows["pasta"]["RTE tied_with_best"] == "cannot tell" and rows["full"]["RTE tied_with_best"] == "yes"
    )
    # per-seed scores are in the output, and the verdicts follow scipy's Welch test with Holm's correction
    seeds = {m: [float(x) for x in rows[m]["RTE seeds"].split()] for m in SCORES}
    assert sorted(seeds["bitfit"]) == pytest.approx(sorted(100 * np.array(SCORES["bitfit"])), abs=1e-3)
    raw = [sps.ttest_ind(seeds[m], seeds["full"], equal_var=False).pvalue for m in ("lora", "bitfit")]
    adjusted = holm(raw)
    assert adjusted[0] >= 0.05 > adjusted[1]
    assert rows["pasta"]["RTE degenerate"] == 1 and rows["full"]["RTE degenerate"] == 0

    assert main(["report", "table", "--model", "m", "--tracking-uri", store, "--stats"]) == 0
    text = capsys.readouterr().out
    assert "≈" in text and "?" in text and "‡" in text
    assert "Welch's t-test" in text and "Holm-Bonferroni" in text and "alpha 0.05" in text
    line = next(x for x in text.splitlines() if x.startswith("| BitFit"))
    assert "≈" not in line  # clearly below the best: not marked as tied


def test_table_without_stats_has_no_marks_but_degenerate(store, capsys):
    assert main(["report", "table", "--model", "m", "--tracking-uri", store]) == 0
    text = capsys.readouterr().out
    assert "≈" not in text and "Welch" not in text and "‡" in text


def test_exclude_degenerate_drops_the_flagged_run_and_says_so(store, capsys):
    assert (
        main(
            [
                "report",
                "table",
                "--model",
                "m",
                "--tracking-uri",
                store,
                "--exclude-degenerate",
                "--format",
                "json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    pasta = next(r for r in out["rows"] if r["method"] == "pasta")
    assert pasta["RTE n"] == 1 and pasta["RTE mean"] == pytest.approx(60.0)
    assert "Degenerate runs left out: 1" in out["caption"]


def test_a_seed_counts_once_per_configuration_and_data(tmp_path, capsys):
    """A seed finalized twice (two finalize commands at once) counts once, the latest; runs of the same seed
    on
    other data (tag data_digest) are left out, not averaged in as more seeds; the caption says both."""
    uri = seeded_store(tmp_path / "mlflow.db")
    c = MlflowClient(uri)
    exp = c.create_experiment("bench-rte")
    data = {"data_digest": "aaaa"}
    log_run(c, exp, "lora", 1, 0.60, extra_tags=data)
    log_run(c, exp, "lora", 1, 0.70, extra_tags=data)  # the same seed again: the latest counts
    log_run(c, exp, "lora", 2, 0.80, extra_tags=data)
    for score in (0.10, 0.20):  # seed 42 on other data, logged earlier than the latest run
        log_run(c, exp, "lora", 42, score, extra_tags={"data_digest": "bbbb"})
    log_run(c, exp, "lora", 3, 0.90, extra_tags=data)  # the latest run: its data is the table's
    assert main(["report", "table", "--model", "m", "--tracking-uri", uri, "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (row,) = out["rows"]
    assert row["RTE n"] == 3 and row["RTE mean"] == pytest.approx(100 * (0.70 + 0.80 + 0.90) / 3)
    assert "1 repeated runs left out" in out["caption"] and "2 runs on other data" in out["caption"]


def test_all_runs_rows_are_labelled_by_what_varies(tmp_path, capsys):
    """Three PASTA configurations that differ in method.layers and lr (not in its knob last_k): each row says
    its own values of what varies, and nothing that does not."""
    uri = seeded_store(tmp_path / "mlflow.db")
    c = MlflowClient(uri)
    exp = c.create_experiment("bench-rte")
    for i, (layers, lr) in enumerate([("all", "0.003"), ("last:4", "0.003"), ("last:4", "0.0001")]):
        log_run(c, exp, "pasta", 1, 0.6 + i / 100, extra_tags={"config_hash": f"cfg{i}"})
        run = c.search_runs([exp], order_by=["attributes.start_time DESC"], max_results=1)[0]
        for k, v in {
            "lr": lr,
            "epochs": "3",
            "method_config.layers": layers,
            "method_config.last_k": "None",
        }.items():
            c.log_param(run.info.run_id, k, v)
    assert main(["report", "table", "--model", "m", "--tracking-uri", uri, "--all-runs"]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("| PASTA")]
    assert len(lines) == 3
    assert any("lr=0.003, method.layers=all [" in x for x in lines)
    assert any("lr=0.0001, method.layers=last:4 [" in x for x in lines)
    assert not any("last_k" in x or "epochs" in x for x in lines)


@pytest.mark.slow
def test_budget_report_is_the_expected_maximum_of_the_trials(tmp_path, capsys):
    uri = seeded_store(tmp_path / "mlflow.db")
    c = MlflowClient(uri)
    exp = c.create_experiment("bench-rte")
    trials = {"lora": [0.55, 0.70, 0.62, 0.58, 0.66], "bitfit": [0.64, 0.65, 0.63]}
    for method, scores in trials.items():
        for i, s in enumerate(scores):
            log_run(
                c,
                exp,
                method,
                1,
                s,
                phase="trial",
                seconds=20.0 if method == "lora" else 5.0,
                extra_tags={"trial": str(i)},
            )
    args = [
        "report",
        "budget",
        "--model",
        "m",
        "--task",
        "rte",
        "--tracking-uri",
        uri,
        "--out-dir",
        str(tmp_path / "fig"),
    ]
    assert main([*args, "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["method"]: r for r in out["rows"]}
    for method, scores in trials.items():
        values = 100 * np.array(scores)
        assert rows[method]["trials"] == len(scores)
        for k in range(1, len(scores) + 1):
            assert rows[method]["expected_max"][str(k)] == pytest.approx(expected_max(values, k)[0])
        assert rows[method]["expected_max"]["1"] == pytest.approx(values.mean())
    assert rows["lora"]["seconds_per_trial"] == pytest.approx(20.0)
    # at one trial BitFit's steadier scores win; with five, LoRA's best trials do: the report shows both
    assert rows["bitfit"]["expected_max"]["1"] > rows["lora"]["expected_max"]["1"]
    assert rows["lora"]["expected_max"]["5"] > rows["bitfit"]["expected_max"]["3"]
    assert (tmp_path / "fig" / "budget-m-rte.png").is_file() and (
        tmp_path / "fig" / "budget-m-rte.pdf"
    ).is_file()
    assert main([*args, "--format", "md"]) == 0
    assert "k=1" in capsys.readouterr().out


@pytest.mark.slow
def test_budget_report_bad_input(tmp_path, capsys):
    uri = seeded_store(tmp_path / "mlflow.db")
    MlflowClient(uri).create_experiment("bench-rte")
    assert main(["report", "budget", "--model", "m", "--task", "rte", "--tracking-uri", uri]) == 2
    assert "no FINISHED trial runs" in capsys.readouterr().err


def test_a_flagged_run_is_tagged_and_said(tiny_models, glue_dir, tmp_path, tracking_uri, monkeypatch, capsys):
    # the rules are tested on known predictions in test_stats.py; here, what a flag does to a real run
    monkeypatch.setattr(
        degenerate, "flags", lambda *a: {degenerate.MAJORITY: "100% of dev predictions are 'x'"}
    )
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
                "--max-steps",
                "1",
                "--batch-size",
                "4",
                "--tracking-uri",
                tracking_uri,
                "--output-dir",
                str(tmp_path / "o"),
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith("degenerate (majority): 100% of dev predictions are 'x'")
    (run,) = all_runs(tracking_uri)
    assert run.data.tags[degenerate.TAG] == "majority"


@pytest.mark.slow
def test_pareto_table_marks_a_point_with_a_degenerate_run(store, tmp_path, capsys):
    assert (
        main(
            [
                "report",
                "pareto",
                "--model",
                "m",
                "--tasks",
                "rte",
                "--tracking-uri",
                store,
                "--out-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    pasta = next(x for x in text.splitlines() if "PASTA" in x)
    assert "‡" in pasta and "flagged degenerate" in text
    assert not any("‡" in x for x in text.splitlines() if "LoRA" in x or "BitFit" in x)


def test_the_caption_states_each_methods_training_budget(tmp_path, capsys):
    uri = seeded_store(tmp_path / "mlflow.db")
    c = MlflowClient(uri)
    exp = c.create_experiment("bench-rte")
    for method, batch in (("lora", "32"), ("pasta", "16")):
        log_run(c, exp, method, 1, 0.6)
        run = c.search_runs([exp], order_by=["attributes.start_time DESC"], max_results=1)[0]
        for k, v in {
            "epochs": "2.0",
            "max_steps": "None",
            "max_train_samples": "1000",
            "batch_size": batch,
        }.items():
            c.log_param(run.info.run_id, k, v)
    assert main(["report", "table", "--model", "m", "--tracking-uri", uri, "--format", "json"]) == 0
    caption = json.loads(capsys.readouterr().out)["caption"]
    assert (
        "Training: LoRA: 2 epochs of the first 1,000 training examples, batch 32; "
        "PASTA: 2 epochs of the first 1,000 training examples, batch 16." in caption
    )


def test_final_rows_come_from_the_latest_sweep_of_a_method():
    """Two sweeps of LoRA on RTE (the second run later, with other settings): its row averages the latest
    sweep's final seeds only, never the best configurations of both as if they were seeds."""
    import pandas as pd

    from reports.runs import aggregate

    def run(study, seed, value, ended):
        return {
            "tags.task": "rte",
            "tags.model": "m",
            "tags.method": "lora",
            "tags.study": study,
            "tags.seed": str(seed),
            "tags.config_hash": study + "-best",
            "metrics.best_dev_glue_score": value,
            "metrics.params_method": 10.0,
            "metrics.params_backbone": 1000.0,
            "metrics.params_head": 2.0,
            "end_time": pd.Timestamp(ended, unit="s", tz="UTC"),
        }

    df = pd.DataFrame(
        [
            run("old", 1, 0.60, 100),
            run("old", 2, 0.62, 110),
            run("new", 1, 0.70, 200),
            run("new", 2, 0.74, 210),
        ]
    )
    row = aggregate(df).query("column == 'RTE'").iloc[0]
    assert row["n"] == 2 and row["mean"] == pytest.approx(72.0) and row["studies"] == "new"
    assert row["older_studies"] == 1
    by_config = aggregate(df, by_config=True).query("column == 'RTE'")  # --all-runs: every configuration
    assert sorted(by_config["mean"].round(6)) == [61.0, 72.0]
