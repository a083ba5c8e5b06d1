"""The method matrix: every method x {tiny BERT, tiny RoBERTa} x {pair, single, regression, tagging}."""

import pytest
import torch

from bench import checkpoint
from bench.config import build_config
from bench.params import count_parameters
from bench.runner import build_model, prepare_data
from bench.tasks import get_task
from bench.train import batch_for
from methods import REGISTRY, AttachContext

SHAPES = ["rte", "sst2", "stsb", "conll2003"]  # pair, single, regression, token tagging
OPTIONS = {"lora": {"r": 2}, "adapter": {"size": 4}, "ptuning": {"prefix_length": 3}}


def setup(tiny_models, glue_dir, method, family, task_name, seed=0):
    cfg = build_config({"method": method, "model": tiny_models[family], "task": task_name, "data_dir": str(glue_dir),
                        "seed": seed, "method_options": OPTIONS.get(method, {}), "max_length": 32})
    task = get_task(task_name)
    built = build_model(cfg, task)
    return cfg, task, built, prepare_data(cfg, task, built)


def expected_head(model, task, family):
    H, C = model.config.hidden_size, task.num_labels
    if family == "roberta" and task.kind != "tagging":
        return H * H + H + H * C + C  # RobertaClassificationHead: dense + out_proj
    return H * C + C


@pytest.mark.parametrize("task_name", SHAPES)
@pytest.mark.parametrize("family", ["bert", "roberta"])
@pytest.mark.parametrize("method", list(REGISTRY))
def test_method_matrix(tiny_models, glue_dir, tmp_path, method, family, task_name):
    cfg, task, built, prep = setup(tiny_models, glue_dir, method, family, task_name)
    model = built.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}

    # Counts equal the formulas, and the head is counted apart from the method.
    counts = count_parameters(model, built.backbone_numel, built.stored_names)
    assert counts["head"] == expected_head(model, task, family)
    # The method's closed-form count (None: the whole backbone, full FT) against the attached model.
    m = built.method
    ctx = AttachContext(task=task, tokenizer=built.tokenizer, family=family)
    expected = m.expected_params(model.config, task, family, built.method_config, ctx.special_positions())
    if expected is not None:
        assert counts["method"] == expected
    elif m.reference:
        assert counts["method"] == built.backbone_numel
    assert counts["trainable"] == counts["method"] + (counts["head"] if m.trains_head else 0)
    # Stored: what trains, plus the newly initialised head when the method does not train it (SAID/DID).
    assert counts["stored"] == counts["trainable"] + (0 if m.trains_head else counts["head"])

    # Two training steps (LoRA's A only gets a gradient once B has moved off zero).
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(built.method.param_groups(model, built.method_config, 0.0), lr=1e-2)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(trainable)  # optimizer sees only these
    model.train()
    for step in range(2):
        batch = batch_for(prep, prep.train, list(range(step * 8, step * 8 + 8)), torch.device("cpu"))
        loss = model(**batch).loss
        extra = m.loss_term(model, built.method_config, step, 4)  # the method's own term, as in train()
        (loss if extra is None else loss + extra).backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed == trainable, (sorted(changed - trainable)[:3], sorted(trainable - changed)[:3])
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)  # no wasted gradients

    # Save -> reload into a fresh backbone (another seed: different method init) -> identical predictions.
    checkpoint.save(tmp_path / "adapter", model, built.stored_names, {})
    dev_batch = batch_for(prep, prep.dev["dev"], list(range(len(prep.dev["dev"]["labels"]))), torch.device("cpu"))
    logits = dev_logits(model, dev_batch)
    _, _, fresh, _ = setup(tiny_models, glue_dir, method, family, task_name, seed=123)
    assert not torch.equal(dev_logits(fresh.model, dev_batch), logits)
    checkpoint.load_into(fresh.model, tmp_path / "adapter")
    assert torch.equal(dev_logits(fresh.model, dev_batch), logits)


def dev_logits(model, batch):
    model.eval()
    with torch.inference_mode():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


@pytest.mark.parametrize("method, added", [("pasta", "pasta.vectors"), ("ptuning", "prefix_encoder.embedding")])
def test_added_vectors_are_not_decayed(tiny_models, glue_dir, method, added):
    """Only matrices decay: biases, LayerNorm parameters and the vectors a method adds get weight decay 0."""
    _, _, built, _ = setup(tiny_models, glue_dir, method, "bert", "rte")
    groups = built.method.param_groups(built.model, built.method_config, 0.01)
    names = {id(p): n for n, p in built.model.named_parameters()}
    decayed = {names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    kept = {names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert any(n.endswith(added) for n in kept) and not any(n.endswith(added) for n in decayed)
    assert all(p.ndim >= 2 and "LayerNorm" not in n for n, p in built.model.named_parameters() if n in decayed)


@pytest.mark.parametrize("subset", ["query_last", "query", "query_intermediate", "attention", "all"])
@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_bitfit_subsets_count_and_train_the_pooler_bias(tiny_models, glue_dir, subset, family):
    """Every subset trains the pooler bias where there is a pooler (the reference adds it to any subset)."""
    cfg = build_config({"method": "bitfit", "model": tiny_models[family], "task": "rte", "data_dir": str(glue_dir),
                        "method_options": {"subset": subset}})
    task = get_task("rte")
    b = build_model(cfg, task)
    trainable = {n for n, p in b.model.named_parameters() if p.requires_grad}
    assert any(n.endswith("pooler.dense.bias") for n in trainable) == (family == "bert")
    counts = count_parameters(b.model, b.backbone_numel, b.stored_names)
    assert counts["method"] == b.method.expected_params(b.model.config, task, family, b.method_config, 0)
