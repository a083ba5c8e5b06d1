"""peft's tuners as bench methods: options typed from peft's config classes, refusals in one line before
anything is created, and AdaLoRA's loop hooks against peft's own AdaLoraModel. (Training, counts, storing and
reloading of every tuner: tests/test_methods.py's matrix and tests/test_roundtrip.py.)"""

import copy

import pytest
import torch

from bench.build import build_model, prepare_data
from bench.cli import main
from bench.errors import BenchError
from bench.resolve import build_config
from bench.tasks import get_task
from bench.train import batch_for
from methods import REGISTRY, get_method
from methods.tuners import SPECS

from support import all_runs


def built(tiny_models, glue_dir, method, family="bert", **options):
    cfg = build_config(
        {
            "method": method,
            "model": tiny_models[family],
            "task": "rte",
            "data_dir": str(glue_dir),
            "max_length": 32,
            "method_options": {**SPECS[method].probe, **options},
        }
    )
    b = build_model(cfg, get_task("rte"))
    return b, prepare_data(cfg, get_task("rte"), b)


def test_every_tuner_is_registered_with_its_options_from_peft():
    import dataclasses

    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
    from peft.utils import PeftType

    assert len(SPECS) >= 33
    for name, spec in SPECS.items():
        method = get_method(name)
        peft_fields = {
            f.name: f for f in dataclasses.fields(PEFT_TYPE_TO_CONFIG_MAPPING[PeftType[spec.peft_type]])
        }
        options = method.defaults()
        assert set(spec.targets) <= set(options)
        for key, value in options.items():
            if key in spec.targets:
                continue
            assert key in peft_fields, (name, key)
            expected = spec.defaults.get(key, peft_fields[key].default)
            assert value == expected, (name, key)
        if method.knob:
            assert method.knob in options and options[method.knob] in (
                *method.knob_values,
                options[method.knob],
            )


@pytest.mark.parametrize(
    "method, options, message",
    [
        ("vera", {"r": "big"}, r"option r='big' for method vera is not a valid int"),
        ("vera", {"d_initial": True}, r"option d_initial=True for method vera is not a valid float"),
        ("loha", {"rank": 4}, r"option for method loha: 'rank' \(choices: .*r,"),
        ("road", {"variant": "road_3"}, r"bad option for method road: variant 'road_3' is not one of road_1"),
        (
            "ia3",
            {"target_modules": " , "},
            r"bad option for method ia3: target_modules ' , ' names no module",
        ),
        (
            "gralora",
            {"r": 3},
            r"bad option for method gralora: r should be divisible by gralora_k",
        ),  # peft's check
    ],
)
def test_bad_options_are_one_line_errors(method, options, message):
    with pytest.raises(BenchError, match=message):
        get_method(method).make_config(options)


def test_targets_are_roles_each_family_maps(tiny_models, glue_dir):
    """key,value on BERT are attention.self.key/value; on ModernBERT the fused Wqkv; a module name is a
    suffix."""
    b, _ = built(tiny_models, glue_dir, "ia3", target_modules="key,value", feedforward_modules="")
    adapted = {n.split(".ia3_l")[0] for n, p in b.model.named_parameters() if ".ia3_l" in n}
    assert adapted == {f"bert.encoder.layer.{i}.attention.self.{m}" for i in (0, 1) for m in ("key", "value")}
    b, _ = built(tiny_models, glue_dir, "loha", "modernbert", target_modules="query,value")
    adapted = {n.split(".hada_")[0] for n, p in b.model.named_parameters() if ".hada_" in n}
    assert adapted == {"model.layers.0.attn.Wqkv", "model.layers.1.attn.Wqkv"}
    b, _ = built(
        tiny_models, glue_dir, "loha", target_modules="dense"
    )  # a module name: every *.dense in the layers
    adapted = {n.split(".hada_")[0] for n, p in b.model.named_parameters() if ".hada_" in n}
    assert len(adapted) == 2 * 3 and all(n.startswith("bert.encoder.layer.") for n in adapted)


def test_a_target_that_matches_nothing_is_refused_naming_the_roles(tiny_models, glue_dir):
    with pytest.raises(
        BenchError, match=r"vera: target_modules='nothing_here' matches no module.*roles: .*query"
    ):
        built(tiny_models, glue_dir, "vera", target_modules="nothing_here")


def test_a_size_peft_refuses_is_refused_before_any_run(tiny_models, glue_dir, tmp_path, tracking_uri, capsys):
    """C3A's block size must divide the layers' width (32 here): peft's own error, one line, exit 2, no
    run."""
    code = main(
        [
            "run", "--method", "c3a", "--model", tiny_models["bert"], "--task", "rte",
            "--data-dir", str(glue_dir), "--set", "method.block_size=12",
            "--output-dir", str(tmp_path / "out"), "--tracking-uri", tracking_uri,
            "--no-progress",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "c3a: peft cannot attach it to this model" in err and len(err.strip().splitlines()) == 1
    assert all_runs(tracking_uri) == []


def penalty_by_peft(tuner, batch) -> torch.Tensor:
    """peft's AdaLoraModel.forward adds orth_reg_weight * (the penalty) to the task loss: take the
    difference."""
    with torch.no_grad():
        return tuner(**batch).loss - tuner.model(**batch).loss


@pytest.mark.slow  # peft's AdaLoRA over enough steps to reallocate ranks
def test_adalora_penalty_and_rank_allocation_match_peft(tiny_models, glue_dir):
    b, prep = built(
        tiny_models, glue_dir, "adalora", init_r=4, target_r=2, orth_reg_weight=0.3, tinit=1, tfinal=2
    )
    model, method, cfg = b.model, b.method, b.method_config
    model.eval()  # no dropout: the two forwards see the same function
    batch = batch_for(prep, prep.train, list(range(8)), torch.device("cpu"))
    tuner = model.__dict__["bench_peft_tuner"]
    with torch.no_grad():
        ours = method.loss_term(model, cfg, 0, 10)
    assert torch.allclose(ours, penalty_by_peft(tuner, batch), rtol=1e-5, atol=1e-7)

    # Train 8 steps through the method's hooks and, on a copy, through peft's documented loop; the rank
    # budget (target_r per module once the final phase starts) and every weight come out the same.
    reference = copy.deepcopy(model)
    ref_tuner = reference.__dict__["bench_peft_tuner"]  # deepcopy copies the reference too
    ref_tuner.peft_config["default"].total_step = 8
    ours_opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    ref_opt = torch.optim.SGD([p for p in reference.parameters() if p.requires_grad], lr=0.1)
    for step in range(1, 9):
        batch = batch_for(
            prep, prep.train, list(range((step % 3) * 8, (step % 3) * 8 + 8)), torch.device("cpu")
        )
        loss = model(**batch).loss + method.loss_term(model, cfg, step - 1, 8)
        loss.backward()
        ours_opt.step()
        method.after_step(model, cfg, step, 8)
        ours_opt.zero_grad()

        ref_tuner(**batch).loss.backward()
        ref_opt.step()
        ref_tuner.update_and_allocate(step)
        ref_opt.zero_grad()
    ref = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        assert torch.allclose(p, ref[name], atol=1e-6), name
    modules = sum(1 for n, _ in model.named_parameters() if n.endswith("lora_E.default"))
    kept = sum(int((p != 0).sum()) for n, p in model.named_parameters() if n.endswith("lora_E.default"))
    assert modules == 2 * 6 and kept == 2 * modules  # target_r = 2 per module on average


def test_adalora_without_a_budgeting_phase_is_refused(tiny_models, glue_dir):
    b, _ = built(tiny_models, glue_dir, "adalora", tinit=5, tfinal=5)
    with pytest.raises(
        BenchError, match=r"adalora: tinit=5 and tfinal=5 leave no budgeting phase in 8 training"
    ):
        b.method.after_step(b.model, b.method_config, 1, 8)


def test_tuners_stay_out_of_the_default_lists():
    from methods import default_methods

    assert not set(SPECS) & set(default_methods("curve")) and not set(SPECS) & set(default_methods("perf"))
    assert all(not REGISTRY[n].reference and not REGISTRY[n].anchor for n in SPECS)


@pytest.mark.parametrize("method", ["ia3", "vera", "loha"])
def test_perf_reference_is_peft_with_the_same_tuner(tiny_models, glue_dir, method):
    """`bench perf` measures a tuner against peft's get_peft_model with its config: the same parameters
    train (peft holds the head twice, the original frozen), and AdaLoRA (loop hooks) has no Trainer
    reference."""
    from benchmarks.references import reference_model, references

    assert references(method) == ("peft",) and references("adalora") == ()
    ours, _ = built(tiny_models, glue_dir, method)
    cfg = build_config(
        {
            "method": method,
            "model": tiny_models["bert"],
            "task": "rte",
            "data_dir": str(glue_dir),
            "method_options": SPECS[method].probe,
        }
    )
    ref = reference_model("peft", cfg, get_task("rte")).model

    def trainable(m):
        return sum(p.numel() for p in m.parameters() if p.requires_grad)

    assert trainable(ref) == trainable(ours.model)
    assert type(ref).__name__ == "PeftModelForSequenceClassification"


@pytest.mark.parametrize("family", ["bert", "modernbert"])
def test_prompt_tuning_on_tagging_scores_the_words_only(tiny_models, glue_dir, family):
    """Prompt tuning prepends n vectors; on token classification the logits come back one per input position
    (the virtual ones dropped) and the loss is cross-entropy over the real positions' labels."""
    import torch.nn.functional as F

    cfg = build_config(
        {
            "method": "prompt_tuning",
            "model": tiny_models[family],
            "task": "conll2003",
            "data_dir": str(glue_dir),
            "method_options": {"num_virtual_tokens": 4},
        }
    )
    task = get_task("conll2003")
    b = build_model(cfg, task)
    prep = prepare_data(cfg, task, b)
    batch = batch_for(prep, prep.train, list(range(4)), torch.device("cpu"))
    b.model.eval()
    out = b.model(**batch)
    assert out.logits.shape[:2] == batch["labels"].shape
    expected = F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), batch["labels"].reshape(-1))
    assert torch.allclose(out.loss, expected)
    assert b.model.soft_prompt.vectors.shape == (4, b.model.config.hidden_size)


@pytest.mark.slow
def test_a_tuner_draws_an_intrinsic_curve_and_reports_it(tiny_models, glue_dir, tmp_path, capsys):
    """`bench intrinsic` takes a tuner's knob (VeRA's r) like a hand-written method's, and the curve's report
    reads the points back."""
    from support import seeded_store

    uri = seeded_store(tmp_path / "mlflow.db")
    argv = ["intrinsic", "--model", tiny_models["bert"], "--task", "rte", "--data-dir", str(glue_dir)]
    argv += ["--methods", "vera", "--points", "2", "--seeds", "1", "--set", "max_steps=2"]
    assert main([*argv, "--tracking-uri", uri, "--output-dir", str(tmp_path / "runs")]) == 0
    assert "4 of 4 point runs finished" in capsys.readouterr().out  # full + head anchors, VeRA r = 64, 1024
    knobs = {r.data.tags["knob_value"] for r in all_runs(uri) if r.data.tags.get("method") == "vera"}
    assert knobs == {"64", "1024"}
    out = ["report", "intrinsic", "--model", tiny_models["bert"], "--task", "rte", "--tracking-uri", uri]
    assert main([*out, "--out-dir", str(tmp_path / "fig")]) == 0
    assert "VeRA" in capsys.readouterr().out
