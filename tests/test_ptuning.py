"""P-tuning v2 against the reference's route: the prefix passed to an unmodified model as past_key_values
(what THUDM/P-tuning-v2 does), which also shifts positions by p. Ours with position_shift=true gives the
same logits; the reparameterisation MLP is one MLP shared by all layers, as in the reference."""

import pytest
import torch
from transformers import BertForSequenceClassification, BertModel

from bench.build import build_model, prepare_data
from bench.compat import cache_argument, peft_prefix_tuning_problem
from bench.param_table import meta_counts
from bench.resolve import build_config
from bench.tasks import get_task
from bench.train import batch_for


def _model(tiny_models, glue_dir, family, method, options):
    cfg = build_config(
        {
            "method": method,
            "model": tiny_models[family],
            "task": "rte",
            "data_dir": str(glue_dir),
            "method_options": options,
            "max_length": 32,
        }
    )
    built = build_model(cfg, get_task("rte"))
    return built, prepare_data(cfg, get_task("rte"), built)


@pytest.mark.parametrize("family", ["bert", "roberta"])
@pytest.mark.parametrize("reparameterize", [0, 16])
def test_matches_the_past_key_values_route(tiny_models, glue_dir, family, reparameterize):
    from transformers import DynamicCache

    opts = {"prefix_length": 3, "dropout": 0.0, "reparameterize": reparameterize}
    ours, prep = _model(tiny_models, glue_dir, family, "ptuning", {**opts, "position_shift": True})
    unshifted, _ = _model(tiny_models, glue_dir, family, "ptuning", opts)
    unshifted.model.load_state_dict(ours.model.state_dict())
    plain, _ = _model(tiny_models, glue_dir, family, "head", {})
    plain.model.load_state_dict(
        {k: v for k, v in ours.model.state_dict().items() if "prefix_encoder" not in k}
    )
    batch = batch_for(prep, prep.dev["dev"], list(range(6)), torch.device("cpu"))
    batch.pop("labels")
    for m in (ours.model, unshifted.model, plain.model):
        m.eval()
    with torch.no_grad():
        logits = ours.model(**batch).logits
        kv = ours.model.base_model.prefix_encoder()  # (layers, 2, heads, p, head_dim)
        cache = DynamicCache()
        for layer in range(kv.shape[0]):
            cache.update(*(kv[layer, i].unsqueeze(0).expand(6, -1, -1, -1) for i in (0, 1)), layer)
        mask = torch.cat(
            [torch.ones(6, 3, dtype=batch["attention_mask"].dtype), batch["attention_mask"]], dim=1
        )
        # transformers 5.24 renamed the argument; either name is the reference's route
        cache_kw = {cache_argument(type(plain.model.base_model)): cache}
        reference = plain.model(**{**batch, "attention_mask": mask}, **cache_kw).logits
        assert torch.allclose(logits, reference, atol=1e-5)
        assert not torch.allclose(unshifted.model(**batch).logits, reference, atol=1e-5)  # the shift matters


def test_reparameterisation_shares_one_mlp():
    # roberta-large, p=20, MLP hidden 512: embedding 20x1024 + 1024->512 + 512->24*2*1024 (the reference's
    # 25.8M)
    c = meta_counts("roberta-large", get_task("rte"), "ptuning", {"prefix_length": 20, "reparameterize": 512})
    L, H, p, m = 24, 1024, 20, 512
    assert c["method"] == p * H + H * m + m + m * L * 2 * H + L * 2 * H == 25_760_256


def only_method_dropout(model, method_dropout):
    """The model's own dropouts off (they are per example anyway), the method's on."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout) and module is not method_dropout:
            module.p = 0.0
    model.config.attention_probs_dropout_prob = 0.0  # sdpa reads the attention dropout from here
    for module in model.modules():
        if hasattr(module, "dropout_prob"):
            module.dropout_prob = 0.0


@pytest.mark.parametrize(
    "method, options",
    [
        ("ptuning", {"prefix_length": 3, "dropout": 0.5, "init_std": 1.0}),
        ("pasta", {"dropout": 0.5, "init_std": 1.0}),
    ],
)
def test_dropout_is_drawn_per_example(tiny_models, glue_dir, method, options):
    built, prep = _model(tiny_models, glue_dir, "bert", method, options)
    base = built.model.base_model
    dropout = base.prefix_encoder.dropout if method == "ptuning" else base.pasta.dropout
    only_method_dropout(built.model, dropout)
    batch = batch_for(prep, prep.dev["dev"], [0, 0], torch.device("cpu"))  # the same example twice
    built.model.eval()
    with torch.no_grad():
        clean = built.model(**batch).logits
    assert torch.allclose(clean[0], clean[1], atol=1e-6)
    built.model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        logits = built.model(**batch).logits
    assert not torch.allclose(
        logits[0], logits[1], atol=1e-4
    )  # one mask shared by the batch would give identical rows
    dropout.p = 0.0
    with torch.no_grad():
        out = built.model(**batch).logits
        assert torch.allclose(out[0], out[1], atol=1e-6)  # nothing else drops


def test_matches_peft_prefix_tuning_on_bert_sequence_classification(tiny_models, glue_dir):
    """peft's PrefixTuningConfig (a case it supports: BERT sequence classification), given our prefix table,
    gives our logits when position_shift=true (peft passes the prefix as past_key_values too)."""
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    problem = peft_prefix_tuning_problem(BertForSequenceClassification, BertModel)
    if problem:
        pytest.skip(
            problem
        )  # test_peft_prefix_problem_is_predicted checks this prediction against peft itself
    ours, prep = _model(
        tiny_models,
        glue_dir,
        "bert",
        "ptuning",
        {"prefix_length": 3, "dropout": 0.0, "position_shift": True, "init_std": 1.0},
    )
    plain, _ = _model(tiny_models, glue_dir, "bert", "head", {})
    plain.model.load_state_dict(
        {k: v for k, v in ours.model.state_dict().items() if "prefix_encoder" not in k}
    )
    peft_model = get_peft_model(
        plain.model, PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=3)
    )
    with (
        torch.no_grad()
    ):  # peft's table is (p, layers * 2 * hidden), keys and values interleaved per layer, as ours
        peft_model.prompt_encoder["default"].embedding.weight.copy_(
            ours.model.base_model.prefix_encoder.embedding
        )
    batch = batch_for(prep, prep.dev["dev"], list(range(6)), torch.device("cpu"))
    batch.pop("labels")
    ours.model.eval()
    peft_model.eval()
    with torch.no_grad():
        assert torch.allclose(ours.model(**batch).logits, peft_model(**batch).logits, atol=1e-5)


def test_peft_prefix_problem_is_predicted(tiny_models, glue_dir):
    """bench.compat says peft's prefix tuning cannot run exactly when peft refuses it (either side of the
    transformers 5.24 rename): what `bench perf` skips its prefix-tuning reference on."""
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    plain, prep = _model(tiny_models, glue_dir, "bert", "head", {})
    peft_model = get_peft_model(
        plain.model, PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=3)
    )
    batch = batch_for(prep, prep.dev["dev"], [0, 1], torch.device("cpu"))
    batch.pop("labels")
    problem = peft_prefix_tuning_problem(BertForSequenceClassification, BertModel)
    try:
        peft_model(**batch)
        refused = None
    except ValueError as e:
        refused = str(e)
    assert (problem is None) == (refused is None), (problem, refused)
    if problem:
        assert "past key values" in refused and "past_key_values" in problem and "\n" not in problem
