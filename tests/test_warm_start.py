"""init_from: a run starts from a finished run's weights with its head replaced (the MNLI warm start of the
RoBERTa-large LoRA rows), by run id, adapter directory or task:<name>; the chain is in the tags; a source
of another method, model or options is refused in one line before anything is created."""

import pytest
import torch
from safetensors.torch import load_file

from bench.build import build_model
from bench.checkpoint import download_run_checkpoint
from bench.cli import main
from bench.errors import BenchError
from bench.resolve import build_config
from bench.tasks import get_task

from support import all_runs, seeded_store


@pytest.fixture(scope="module")
def mnli_store(tiny_models, glue_dir, tmp_path_factory):
    """One finished LoRA run on MNLI, shared by the refusal cases."""
    root = tmp_path_factory.mktemp("warm")
    uri = seeded_store(root / "mlflow.db")
    run(tiny_models, glue_dir, root, uri, "mnli")
    return uri


def run(tiny_models, glue_dir, tmp_path, uri, task, *extra):
    argv = [
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
        "4",
        "--lr",
        "5e-2",
        "--no-progress",
        "--tracking-uri",
        uri,
        "--output-dir",
        str(tmp_path / "out"),
        "--set",
        "method.r=2",
        *extra,
    ]
    assert main(argv) == 0


@pytest.mark.slow
def test_rte_starts_from_the_mnli_run(tiny_models, glue_dir, tmp_path, tracking_uri):
    run(tiny_models, glue_dir, tmp_path, tracking_uri, "mnli")
    (mnli,) = all_runs(tracking_uri)
    adapter = download_run_checkpoint(mnli.info.run_id, tracking_uri, tmp_path / "dl")
    source = load_file(str(adapter / "adapter.safetensors"))
    lora = {n: t for n, t in source.items() if "lora_" in n}
    assert lora and any(t.abs().sum() > 0 for n, t in lora.items() if "lora_B" in n)  # trained, off zero

    for spec in (mnli.info.run_id, "task:mnli", str(adapter)):
        cfg = build_config(
            {
                "method": "lora",
                "model": tiny_models["bert"],
                "task": "rte",
                "data_dir": str(glue_dir),
                "method_options": {"r": 2},
                "tracking_uri": tracking_uri,
                "init_from": spec,
            }
        )
        built = build_model(cfg, get_task("rte"))
        params = dict(built.model.named_parameters())
        assert all(torch.equal(params[n], t) for n, t in lora.items())  # the method's weights carried over
        assert params["classifier.weight"].shape[0] == 2  # a new 2-way head, not MNLI's 3-way one
        assert built.init_tags["init_from"] in (mnli.info.run_id, str(adapter.resolve()))
        assert built.init_tags["init_from_task"] == "mnli"

    run(tiny_models, glue_dir, tmp_path, tracking_uri, "rte", "--set", "init_from=task:mnli")
    rte = next(r for r in all_runs(tracking_uri) if r.data.tags["task"] == "rte")
    assert (
        rte.data.tags["init_from"] == mnli.info.run_id
        and rte.data.tags["init_chain"] == f"mnli:{mnli.info.run_id}"
    )
    # Its checkpoint reloads alone (the stored parameters hold what the warm start gave): bench eval
    # reproduces it.
    from bench.reload import evaluate_checkpoint

    result = evaluate_checkpoint(
        download_run_checkpoint(rte.info.run_id, tracking_uri, tmp_path / "dl-rte"), echo=lambda *a: None
    )
    assert result["metrics"]["dev"]["accuracy"] == rte.data.metrics["best_dev_accuracy"]
    # A run warm-started from a warm-started run records the whole chain.
    run(tiny_models, glue_dir, tmp_path, tracking_uri, "sst2", "--set", f"init_from={rte.info.run_id}")
    sst2 = next(r for r in all_runs(tracking_uri) if r.data.tags["task"] == "sst2")
    assert sst2.data.tags["init_chain"] == f"mnli:{mnli.info.run_id} > rte:{rte.info.run_id}"


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, message",
    [
        ({"method": "pasta", "method_options": {}}, "the source trained method 'lora', this run 'pasta'"),
        ({"method_options": {"r": 4}}, "the source trained method_options"),
        ({"init_from": "0123456789abcdef0123456789abcdef"}, "no MLflow run"),
        ({"init_from": "task:qnli"}, "init_from task:qnli: no finished lora run"),
    ],
)
def test_a_source_that_does_not_fit_is_one_line(tiny_models, glue_dir, mnli_store, change, message):
    tracking_uri = mnli_store
    (mnli,) = all_runs(tracking_uri)
    base = {
        "method": "lora",
        "model": tiny_models["bert"],
        "task": "rte",
        "data_dir": str(glue_dir),
        "method_options": {"r": 2},
        "tracking_uri": tracking_uri,
        "init_from": mnli.info.run_id,
    }
    with pytest.raises(BenchError, match=message):
        build_model(build_config({**base, **change}), get_task("rte"))
    assert len(all_runs(tracking_uri)) == 1  # nothing created
