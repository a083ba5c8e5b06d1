"""The method matrix: every method x every encoder family (a tiny model of each) x {pair, single, regression,
tagging}. Counts are checked against closed forms written here from each method's and family's definition,
and the trainable set against names derived here, never against what the code says of itself."""

import pytest
import torch

from bench import checkpoint
from bench.build import build_model, prepare_data
from bench.errors import BenchError
from bench.families import families
from bench.params import count_parameters
from bench.resolve import build_config
from bench.tasks import get_task
from bench.train import batch_for
from methods import REGISTRY
from methods.tuners import SPECS

SHAPES = ["rte", "sst2", "stsb", "conll2003"]  # pair, single, regression, token tagging
# BERT and RoBERTa on every shape; the other families on a pair and tagging (single inputs and regression add
# nothing family-specific: the same template and head as the pair task).
FIRST = ("bert", "roberta")
OPTIONS = {
    "lora": {"r": 2},
    "adapter": {"size": 4},
    "ptuning": {"prefix_length": 3},
    "prompt_tuning": {"num_virtual_tokens": 3},
}
# (method, family) pairs that must be refused before anything is built, with the reason's words.
REFUSED = {
    ("bitfit", "modernbert"): "bitfit: modernbert has no bias terms in its encoder",
    ("ptuning", "deberta-v2"): "ptuning: deberta-v2: its disentangled attention",
}


def is_tuner(method):
    return REGISTRY[method].peft_tuner


# peft tuners: every one on BERT (pair task); these also on every family and on tagging, with closed forms
# below
TUNERS_EVERYWHERE = ("ia3", "vera", "loha", "dora", "fourierft", "ln_tuning", "adalora")
TUNERS_FAST = ("ia3", "vera")


def options(method):
    return SPECS[method].probe if is_tuner(method) else OPTIONS.get(method, {})


def tuner_cells(method):
    for family in families():
        everywhere = method in TUNERS_EVERYWHERE
        for task in ("rte", "conll2003") if everywhere else ("rte",) if family == "bert" else ():
            quick = method in TUNERS_FAST and family == "bert" and task == "rte"
            yield pytest.param(
                method, family, task, id=f"{method}-{family}-{task}", marks=() if quick else pytest.mark.slow
            )


def cells():
    for method in REGISTRY:
        if is_tuner(method):
            yield from tuner_cells(method)
            continue
        for family in families():
            # ELECTRA and XLM-R share RoBERTa's head code: their pair task suffices
            newer = ("rte",) if family in ("electra", "xlm-roberta") else ("rte", "conll2003")
            for task in SHAPES if family in FIRST else newer:
                # the fast subset: each method on BERT and ModernBERT (where refusals live), one pair task
                quick = task == "rte" and family in ("bert", "modernbert")
                yield pytest.param(
                    method,
                    family,
                    task,
                    id=f"{method}-{family}-{task}",
                    marks=() if quick else pytest.mark.slow,
                )


def closed_form(method, family, task, conf, m_special):
    """The method's own parameters (head excluded), from the papers' formulas and each family's layout."""
    L, H, I = conf.num_hidden_layers, conf.hidden_size, conf.intermediate_size  # noqa: E741
    seq = task.kind != "tagging"
    if method == "pasta":
        return L * m_special * H
    if method == "adapter":  # 2 adapters a layer + every LayerNorm (gain and bias; ModernBERT: gains only,
        m = 4  # no norm before layer 0's attention, one after the last layer)
        norms = {"modernbert": (2 * L - 1 + 2) * H, "deberta-v2": (2 * L + 2) * 2 * H}.get(
            family, (2 * L + 1) * 2 * H
        )
        return 2 * L * (2 * H * m + m + H) + norms
    if method == "bitfit":  # every bias: q, k, v, attention out, 2 LN betas, FFN in and out; embedding LN;
        extra = {"deberta-v2": H, "bert": H if seq else 0}.get(
            family, 0
        )  # + rel-pos LN / the pretrained pooler
        return L * (7 * H + I) + H + extra
    if method == "lora":  # r=2 on W_q and W_v; ModernBERT: on its fused Wqkv (H -> 3H)
        return L * 2 * (4 * H) if family == "modernbert" else L * 2 * 2 * (2 * H)
    if method == "ptuning":
        return L * 2 * H * 3
    if method == "head":
        return 0
    if method == "prompt_tuning":  # n vectors of width H prepended to the input embeddings
        return 3 * H
    if method in ("said", "did"):
        return REGISTRY[method].make_config({}).d
    return tuner_closed_form(method, family, conf)


def tuner_closed_form(method, family, conf):
    """peft tuners at their probe sizes, from each paper's definition, on W_q, W_v (ModernBERT: its fused
    Wqkv,
    H -> 3H, holds both) unless said otherwise."""
    L, H, I = conf.num_hidden_layers, conf.hidden_size, conf.intermediate_size  # noqa: E741
    fused = family == "modernbert"
    qv = [(H, 3 * H)] if fused else [(H, H), (H, H)]  # (in, out) of each adapted module in a layer
    opts = SPECS[method].defaults | SPECS[method].probe if method in SPECS else {}
    if method == "ia3":  # l_k, l_v (output scalings) and l_ff (the FFN output projection's input scaling)
        return L * ((3 * H if fused else 2 * H) + I)
    if method == "vera":  # lambda_b (out) and lambda_d (r) per module; the random A, B are frozen and shared
        return L * sum(out + opts["r"] for _, out in qv)
    if method == "loha":  # two Hadamard-multiplied low-rank pairs: 2 r (in + out)
        return L * sum(2 * 8 * (i + o) for i, o in qv)
    if method == "dora":  # LoRA's r (in + out) and a magnitude per output
        return L * sum(8 * (i + o) + o for i, o in qv)
    if method == "fourierft":  # n spectral coefficients per module
        return L * len(qv) * opts["n_frequency"]
    if method == "ln_tuning":  # gain and bias of each layer's two LayerNorms (ModernBERT: gains only, and
        # layer 0's attention norm is an Identity)
        return (2 * L - 1) * H if fused else L * 2 * 2 * H
    if method == "adalora":  # P (r x in), Q (out x r), Lambda (r) on every projection; init_r 12
        r = 12
        mods = [(H, 3 * H), (H, H), (H, 2 * I), (I, H)] if fused else [(H, H)] * 4 + [(H, I), (I, H)]
        return L * sum(r * (i + o) + r for i, o in mods)
    return None  # full FT: the whole backbone; Diff pruning: its diff and gates


def special_positions(family, task):
    if task.layout == "words" or not task.is_pair:
        return 2
    return 4 if family in ("roberta", "xlm-roberta") else 3  # <s> a </s></s> b </s> vs [CLS] a [SEP] b [SEP]


def head_names(family, task):
    """Top-level modules of the task head (BERT's pooler is pretrained, inside the encoder, and stays
    frozen)."""
    seq = task.kind != "tagging"
    return {
        "deberta-v2": ("pooler.", "classifier.") if seq else ("classifier.",),
        "modernbert": ("head.", "classifier."),
    }.get(family, ("classifier.",))


def is_trained(method, family, task, name):
    """Whether the method's definition trains parameter `name` (the head apart)."""
    base = not name.startswith(head_names(family, task))
    norm = ("norm" in name.lower()) and base
    return {
        "full": base,
        "head": False,
        "pasta": name.endswith("pasta.vectors"),
        "adapter": ".adapter." in name or norm,
        "bitfit": base and name.endswith(".bias"),
        "lora": "lora_" in name,
        "ptuning": "prefix_encoder." in name,
        "prompt_tuning": name == "soft_prompt.vectors",
    }.get(method)


def setup(tiny_models, glue_dir, method, family, task_name, seed=0):
    cfg = build_config(
        {
            "method": method,
            "model": tiny_models[family],
            "task": task_name,
            "data_dir": str(glue_dir),
            "seed": seed,
            "method_options": options(method),
            "max_length": 32,
        }
    )
    task = get_task(task_name)
    built = build_model(cfg, task)
    return cfg, task, built, prepare_data(cfg, task, built)


def expected_head(model, task, family):
    H, C = model.config.hidden_size, task.num_labels
    if task.kind == "tagging":
        return H * H + H + H * C + C if family == "modernbert" else H * C + C
    return {
        "bert": H * C + C,  # the pretrained pooler is the encoder's
        "modernbert": H * H + H + H * C + C,  # head.dense (no bias) + head.norm (gain only) + classifier
    }.get(family, H * H + H + H * C + C)  # a new dense (+ bias) + the output layer


def test_the_matrix_covers_every_registered_family():
    assert set(families()) >= {"bert", "roberta", "deberta-v2", "electra", "xlm-roberta", "modernbert"}


@pytest.mark.parametrize("method, family, task_name", list(cells()))
def test_method_matrix(tiny_models, glue_dir, tmp_path, method, family, task_name):
    if (method, family) in REFUSED:
        with pytest.raises(BenchError, match=REFUSED[method, family]):
            setup(tiny_models, glue_dir, method, family, task_name)
        return
    cfg, task, built, prep = setup(tiny_models, glue_dir, method, family, task_name)
    model = built.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}

    # Counts equal the closed forms, and the head is counted apart from the method; full FT is 100%.
    counts = count_parameters(model, built.backbone_numel, built.stored_names)
    assert counts["head"] == expected_head(model, task, family)
    m = built.method
    expected = closed_form(method, family, task, model.config, special_positions(family, task))
    if expected is not None:
        assert counts["method"] == expected
    elif m.reference:
        assert counts["method"] == built.backbone_numel
    rule = is_trained(method, family, task, "")
    if (
        rule is not None
    ):  # the trainable set from the method's definition (+ the head where the method trains it)
        head = head_names(family, task)
        defined = {
            n
            for n, _ in model.named_parameters()
            if is_trained(method, family, task, n) or (m.trains_head and n.startswith(head))
        }
        assert trainable == defined, (sorted(trainable - defined)[:3], sorted(defined - trainable)[:3])
    if is_tuner(method):  # a peft tuner trains some of its adapter's parameters (peft names them by the
        # adapter; some stay frozen constants: AdaLoRA's rank, GLoRA's constant D) and nothing of the backbone
        method_params = trainable - {n for n in trainable if n.startswith(head_names(family, task))}
        assert method_params and all(".default" in n for n in method_params), sorted(method_params)[:3]
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
    if is_tuner(method):  # some of a tuner's parameters move only once others have (GLoRA's D after its A, B)
        assert changed <= trainable and changed - {
            n for n in changed if n.startswith(head_names(family, task))
        }
    else:
        assert changed == trainable, (sorted(changed - trainable)[:3], sorted(trainable - changed)[:3])
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)  # no wasted gradients

    # Save -> reload into a fresh backbone (another seed: different method init) -> identical predictions.
    checkpoint.save(tmp_path / "adapter", model, built.stored_names, {})
    dev_batch = batch_for(
        prep, prep.dev["dev"], list(range(len(prep.dev["dev"]["labels"]))), torch.device("cpu")
    )
    logits = dev_logits(model, dev_batch)
    _, _, fresh, _ = setup(tiny_models, glue_dir, method, family, task_name, seed=123)
    assert not torch.equal(dev_logits(fresh.model, dev_batch), logits)
    checkpoint.load_into(fresh.model, tmp_path / "adapter")
    assert torch.equal(dev_logits(fresh.model, dev_batch), logits)


def dev_logits(model, batch):
    model.eval()
    with torch.inference_mode():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


@pytest.mark.parametrize(
    "method, added", [("pasta", "pasta.vectors"), ("ptuning", "prefix_encoder.embedding")]
)
def test_added_vectors_are_not_decayed(tiny_models, glue_dir, method, added):
    """Only matrices decay: biases, LayerNorm parameters and the vectors a method adds get weight decay 0."""
    _, _, built, _ = setup(tiny_models, glue_dir, method, "bert", "rte")
    groups = built.method.param_groups(built.model, built.method_config, 0.01)
    names = {id(p): n for n, p in built.model.named_parameters()}
    decayed = {names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    kept = {names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert any(n.endswith(added) for n in kept) and not any(n.endswith(added) for n in decayed)
    assert all(
        p.ndim >= 2 and "LayerNorm" not in n for n, p in built.model.named_parameters() if n in decayed
    )


@pytest.mark.parametrize("subset", ["query_last", "query", "query_intermediate", "attention", "all"])
@pytest.mark.parametrize(
    "family",
    ["bert", *(pytest.param(f, marks=pytest.mark.slow) for f in ("roberta", "deberta-v2", "electra"))],
)
def test_bitfit_subsets_count_and_train_the_pooler_bias(tiny_models, glue_dir, subset, family):
    """Every subset trains the pooler bias where there is a pooler (the reference adds it to any subset); the
    subsets follow each family's own projection names (DeBERTa: query_proj ...)."""
    cfg = build_config(
        {
            "method": "bitfit",
            "model": tiny_models[family],
            "task": "rte",
            "data_dir": str(glue_dir),
            "method_options": {"subset": subset},
        }
    )
    task = get_task("rte")
    b = build_model(cfg, task)
    trainable = {
        n
        for n, p in b.model.named_parameters()
        if p.requires_grad and not n.startswith("classifier.") and not n.startswith("pooler.")
    }
    assert any(n.endswith("pooler.dense.bias") for n in trainable) == (family == "bert")
    L, H, I = 2, 32, 64  # noqa: E741 - the tiny models
    pooler = H if family == "bert" else 0
    per_layer = {"query": H, "query_intermediate": H + I, "attention": 5 * H + I}
    expected = (
        H
        if subset == "query_last"
        else L * per_layer[subset]
        if subset != "all"
        else L * (7 * H + I) + H + (H if family == "deberta-v2" else 0)
    ) + pooler
    assert sum(p.numel() for n, p in b.model.named_parameters() if n in trainable) == expected
    assert all(n.endswith(".bias") for n in trainable)


@pytest.mark.parametrize("subset", ["query", "attention"])
def test_bitfit_subsets_refused_where_projections_are_fused(tiny_models, glue_dir, subset, tmp_path):
    """ModernBERT's biases, when a config has them, sit in a fused Wqkv: a query-only subset cannot exist."""
    import json

    from bench.families import families

    from support import build_tiny_model

    fam = families()["modernbert"]
    biased = type("Biased", (type(fam),), {"tiny_config": {**fam.tiny_config, "attention_bias": True}})()
    directory = build_tiny_model(tmp_path / "biased", biased)
    assert json.loads((directory / "config.json").read_text())["attention_bias"] is True
    cfg = build_config(
        {
            "method": "bitfit",
            "model": str(directory),
            "task": "rte",
            "data_dir": str(glue_dir),
            "method_options": {"subset": subset},
        }
    )
    with pytest.raises(BenchError, match="fused projection"):
        build_model(cfg, get_task("rte"))
    b = build_model(cfg.replace(method_options={"subset": "all"}), get_task("rte"))
    H = 32
    assert (
        sum(
            p.numel()
            for n, p in b.model.named_parameters()
            if p.requires_grad and not n.startswith(("head.", "classifier."))
        )
        == 2 * 4 * H
    )  # Wqkv 3H + Wo H
