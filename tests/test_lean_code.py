"""Family.lean_code: DeBERTa-v2's position bias without per-example copies of the position vectors and
without gathers keeping their inputs; ModernBERT's attention values copied out of the fused Wqkv output; the
BERT layout's SDPA attention and every dropout keeping bool masks (bench/lean.py). The reference is
transformers' and torch's own code: the same model, a copy of it left as shipped, must give the same logits
and gradients; the memory the autograd graph keeps must drop by what the shipped code holds needlessly,
counted here from the shapes."""

import copy

import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    ModernBertConfig,
    ModernBertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from bench.families import families
from bench.lean import LeanDropout, lean_sdpa_attention, use_lean_dropout

B, T, HIDDEN, HEADS, LAYERS = 4, 24, 32, 2, 2
VARIANTS = {  # the configurations DeBERTa-v2 and v3 checkpoints use, and the attention types apart
    "v3 shared keys, buckets": dict(share_att_key=True, pos_att_type=["p2c", "c2p"], position_buckets=16),
    "v2 own position projections": dict(
        share_att_key=False, pos_att_type=["p2c", "c2p"], position_buckets=-1
    ),
    "c2p only": dict(share_att_key=True, pos_att_type=["c2p"], position_buckets=8),
    "p2c only": dict(share_att_key=False, pos_att_type=["p2c"], position_buckets=8),
}


def shipped_and_lean(config_cls, model_cls, family: str, **config):
    """A tiny model as transformers ships it and a copy with the family's lean code."""
    config = config_cls(
        vocab_size=100,
        hidden_size=HIDDEN,
        num_attention_heads=HEADS,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
        **config,
    )
    torch.manual_seed(0)
    shipped = model_cls(config)
    lean = copy.deepcopy(shipped)
    families()[family].lean_code(lean)
    return shipped, lean, config


def models(variant):
    return shipped_and_lean(
        DebertaV2Config,
        DebertaV2ForSequenceClassification,
        "deberta-v2",
        num_hidden_layers=LAYERS,
        relative_attention=True,
        max_relative_positions=-1,
        norm_rel_ebd="layer_norm",
        position_biased_input=False,
        **VARIANTS[variant],
    )


def step(model, seed=1, labels=(0, 1, 2, 1)):
    """Logits, every parameter's gradient and the bytes of the tensors autograd keeps for the backward
    (storages counted once, parameters not counted)."""
    kept = {}

    def pack(t):
        if not isinstance(t, torch.nn.Parameter):
            kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    g = torch.Generator().manual_seed(7)
    ids = torch.randint(5, 100, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[: B // 2, T - 5 :] = 0
    model.train()
    torch.manual_seed(seed)  # the same dropout masks in both models: lean code draws as torch's dropout does
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(input_ids=ids, attention_mask=mask, labels=torch.tensor(labels))
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), grads, sum(kept.values())


def same_step(shipped, lean) -> tuple[int, int]:
    """Asserts equal logits and gradients; returns the bytes each kept for the backward."""
    logits, grads, kept = step(shipped)
    lean_logits, lean_grads, lean_kept = step(lean)
    torch.testing.assert_close(lean_logits, logits, rtol=1e-5, atol=1e-6)
    assert lean_grads.keys() == grads.keys()
    for name in grads:
        torch.testing.assert_close(lean_grads[name], grads[name], rtol=1e-4, atol=1e-6, msg=name)
    return kept, lean_kept


@pytest.mark.parametrize("variant", VARIANTS)
def test_lean_position_bias_matches_transformers(variant):
    same_step(*models(variant)[:2])


@pytest.mark.parametrize("variant", VARIANTS)
def test_lean_position_bias_keeps_less(variant):
    """What the shipped code keeps and the lean code does not, per layer and attention type: the position
    vectors repeated for every example (B*heads, 2k, d) and the gather's input (B*heads, T, 2k). The lean code
    keeps the unrepeated positions (heads, 2k, d) and the rows folded per head (heads, B*T, d) instead of the
    rows themselves: for c2p those are the queries, which the content scores keep anyway (so the fold is
    extra); for p2c the keys, which the shipped code's product keeps and nothing else does (the content scores
    keep the keys scaled), so the fold replaces them."""
    shipped, lean, config = models(variant)
    span = config.position_buckets if config.position_buckets > 0 else config.max_position_embeddings
    d = HIDDEN // HEADS
    repeated, gather_input = B * HEADS * 2 * span * d, B * HEADS * T * 2 * span
    positions, folded = HEADS * 2 * span * d, HEADS * B * T * d
    per_term = {
        "c2p": repeated + gather_input - positions - folded,
        "p2c": repeated + gather_input - positions,
    }
    expected = LAYERS * sum(per_term[t] for t in config.pos_att_type) * 4  # float32 bytes
    saved = step(shipped)[2] - step(lean)[2]
    assert saved == expected


def test_bench_models_get_lean_code_and_references_do_not(tiny_models):
    from bench.models import load_model
    from bench.tasks import get_task

    task = get_task("rte")
    lean, _ = load_model(tiny_models["deberta-v2"], task)
    shipped, _ = load_model(tiny_models["deberta-v2"], task, lean=False)
    attn = [m for m in lean.modules() if type(m).__name__ == "DisentangledSelfAttention"]
    plain = [m for m in shipped.modules() if type(m).__name__ == "DisentangledSelfAttention"]
    assert attn and all("disentangled_attention_bias" in vars(m) for m in attn)
    assert plain and not any("disentangled_attention_bias" in vars(m) for m in plain)
    lean, _ = load_model(tiny_models["modernbert"], task)
    shipped, _ = load_model(tiny_models["modernbert"], task, lean=False)
    assert (lean.config._attn_implementation, shipped.config._attn_implementation) == (
        "bench_lean_sdpa",
        "sdpa",
    )


def test_modernbert_own_values_match_transformers():
    shipped, lean, _ = shipped_and_lean(
        ModernBertConfig,
        ModernBertForSequenceClassification,
        "modernbert",
        num_hidden_layers=3,
        global_attn_every_n_layers=2,
        local_attention=8,
        pad_token_id=0,
        attn_implementation="sdpa",
    )
    assert lean.config._attn_implementation != shipped.config._attn_implementation == "sdpa"
    kept, lean_kept = same_step(shipped, lean)
    # Per layer, the values kept as a view held the (B, T, 3, heads, d) Wqkv output; as a copy they hold
    # (B, heads, T, d): two thirds of the buffer, the queries and keys before the rotary embedding, go.
    assert kept - lean_kept == 3 * B * T * 2 * HIDDEN * 4


def bert_layout(config_cls, model_cls, family):
    """A tiny BERT-layout model with transformers' default dropout (0.1 on attention and hidden states) as
    shipped, and a copy with the family's lean code and bench's dropout."""
    shipped, lean, config = shipped_and_lean(
        config_cls, model_cls, family, num_hidden_layers=LAYERS, attn_implementation="sdpa"
    )
    attention = [layer.attention.self for layer in lean.base_model.encoder.layer]
    use_lean_dropout(lean, "torch", attention)
    assert config.attention_probs_dropout_prob == config.hidden_dropout_prob == 0.1
    return shipped, lean


@pytest.mark.parametrize(
    "family",
    [
        ("bert", BertConfig, BertForSequenceClassification),
        ("roberta", RobertaConfig, RobertaForSequenceClassification),
    ],
    ids=lambda f: f[0],
)
def test_lean_attention_and_dropout_match_transformers(family):
    name, config_cls, model_cls = family
    shipped, lean = bert_layout(config_cls, model_cls, name)
    assert lean.config._attn_implementation == "bench_lean_sdpa"
    assert any(type(m) is LeanDropout for m in lean.modules())
    same_step(shipped, lean)


def test_lean_attention_and_dropout_keep_less():
    """Per layer, SDPA's math path keeps three (B, heads, T, T) float32 tensors (probabilities, dropout noise,
    dropped-out probabilities) where the lean attention keeps the probabilities and a bool mask: 7 bytes a
    score less; and each of the layer's two hidden dropouts keeps a bool mask for a float one: 3 bytes an
    element less. Outside the layers: the embeddings' dropout (B, T, hidden) and BERT's classifier dropout on
    the pooled output (B, hidden)."""
    shipped, lean = bert_layout(BertConfig, BertForSequenceClassification, "bert")
    scores, hidden = B * HEADS * T * T, B * T * HIDDEN
    expected = LAYERS * (7 * scores + 2 * 3 * hidden) + 3 * hidden + 3 * B * HIDDEN
    assert step(shipped)[2] - step(lean)[2] == expected


def test_lean_dropout_draws_torch_masks():
    torch.manual_seed(3)
    x = torch.randn(64, 33, requires_grad=True)
    plain, lean = nn.Dropout(0.3), nn.Dropout(0.3)
    use_lean_dropout(lean, "torch")
    outs, grads = [], []
    for module in (plain, lean):
        torch.manual_seed(5)
        out = module(x)
        (g,) = torch.autograd.grad(out, x, torch.arange(out.numel(), dtype=out.dtype).view_as(out))
        outs.append(out)
        grads.append(g)
    assert type(lean) is LeanDropout and (outs[0] == 0).any()
    assert torch.equal(outs[0], outs[1]) and torch.equal(grads[0], grads[1])
    lean.eval()
    assert torch.equal(lean(x), x)


def test_lean_attention_leaves_a_row_without_keys_to_sdpa():
    """SDPA's safe softmax gives zeros where a bool mask leaves a query no key; a plain softmax gives NaN."""
    q = torch.randn(2, 2, 5, 4, requires_grad=True)
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[0, 0, 1] = False
    module = nn.Module()
    torch.manual_seed(0)
    out, _ = lean_sdpa_attention(module, q, q, q, mask, dropout=0.5, is_causal=False)
    assert torch.isfinite(out).all() and (out[0, 1] == 0).all()


@pytest.mark.parametrize("method", ["ptuning", "lora"])
def test_bench_builds_lean_dropout_and_attention_into_methods(tiny_models, glue_dir, method):
    """build_model's models train as transformers' code does: the same loss and gradients from the same seed
    (P-tuning v2's prefixed attention through the lean attention, LoRA's dropout keeping bools); the
    references (lean=False) keep torch's dropout."""
    from bench.build import build_model, prepare_data
    from bench.resolve import build_config
    from bench.tasks import get_task
    from bench.train import batch_for

    task = get_task("rte")
    options = {"ptuning": {"dropout": 0.2}, "lora": {"dropout": 0.2}}[method]
    cfg = build_config(
        {
            "method": method,
            "model": tiny_models["bert"],
            "task": "rte",
            "data_dir": str(glue_dir),
            "method_options": options,
            "max_length": 32,
            "seed": 3,
            "dropout_draws": "torch",
            "last_layer_tokens": "all",  # torch's masks at every token (the short layers draw fewer)
            "padding_tokens": "compute",
        }
    )
    results = []
    for lean in (False, True):
        built = build_model(cfg, task, lean=lean)
        model = built.model.train()
        dropouts = [n for n, m in model.named_modules() if type(m) in (nn.Dropout, LeanDropout)]
        own = [n for n in dropouts if "prefix_encoder" in n or "lora_dropout" in n]
        assert own and all(isinstance(model.get_submodule(n), LeanDropout) == lean for n in dropouts)
        assert not lean or all(model.get_submodule(n).draws == "torch" for n in dropouts)
        slots = [m.bench_prefix for m in model.modules() if hasattr(m, "bench_prefix")]
        assert all(slot.lean == lean for slot in slots) and bool(slots) == (method == "ptuning")
        prep = prepare_data(cfg, task, built)
        batch = batch_for(prep, prep.train, list(range(8)), torch.device("cpu"))
        torch.manual_seed(1)
        loss = model(**batch).loss
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}))
    (loss, grads), (lean_loss, lean_grads) = results
    torch.testing.assert_close(lean_loss, loss, rtol=1e-5, atol=1e-6)
    for name in grads:
        torch.testing.assert_close(lean_grads[name], grads[name], rtol=1e-4, atol=1e-6, msg=name)


N_DRAWS = 1 << 20


def keep_rate_bounds(keep_probability: float, n: int = N_DRAWS) -> tuple[float, float]:
    """Five binomial standard deviations either side of the keep probability."""
    sd = (keep_probability * (1 - keep_probability) / n) ** 0.5
    return keep_probability - 5 * sd, keep_probability + 5 * sd


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
def test_fast_draws_drop_at_p_rounded_to_16_bits_and_keep_the_expectation(p):
    """draws="fast": an element stays with probability 1 - round(p * 2^16) / 2^16 and is scaled by its
    inverse (closed forms written here); the backward multiplies by the same mask; neighbours (lanes of one
    64-bit draw) are dropped independently; a seed gives the same masks, another seed others."""
    keep_probability = 1 - round(p * 65536) / 65536
    dropout = nn.Dropout(p)
    use_lean_dropout(dropout, "fast")
    x = torch.ones(N_DRAWS, requires_grad=True)
    torch.manual_seed(7)
    out = dropout(x)
    (grad,) = torch.autograd.grad(out, x, torch.full_like(out, 2.0))
    kept = out != 0
    assert torch.equal(out[kept], torch.full_like(out[kept], 1 / keep_probability))
    assert torch.equal(grad, 2 * out.detach())
    low, high = keep_rate_bounds(keep_probability)
    assert low < kept.double().mean() < high
    pairs = kept[0::2] & kept[1::2]  # lanes 0/1 and 2/3 of each 64-bit word, and across words
    low, high = keep_rate_bounds(keep_probability**2, N_DRAWS // 2)
    assert low < pairs.double().mean() < high
    torch.manual_seed(7)
    assert torch.equal(dropout(x), out)
    assert not torch.equal(dropout(x), out)


def test_fast_draws_leave_p_at_the_ends_to_torch():
    """p within 2^-17 of 0 or 1 would round to keeping all or nothing: torch's draws there."""
    for p in (1e-6, 1 - 1e-6):
        dropout = nn.Dropout(p)
        use_lean_dropout(dropout, "fast")
        torch.manual_seed(0)
        x = torch.ones(1000, requires_grad=True)
        torch.manual_seed(0)
        expected = nn.Dropout(p)(x)
        torch.manual_seed(0)
        assert torch.equal(dropout(x), expected)


def test_lean_attention_draws_as_its_module_says():
    """The lean attention with the module's `bench_dropout_draws` = fast equals softmax(q k^T / sqrt(d) +
    mask) times the fast mask's noise, times v (written out here), forward and backward."""
    from bench.lean import MaskDraws

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 4, requires_grad=True) for _ in range(3))
    mask = torch.zeros(2, 1, 6, 6)
    mask[1, ..., 4:] = torch.finfo(torch.float32).min
    module = nn.Module()
    module.bench_dropout_draws = "fast"
    torch.manual_seed(11)
    out, _ = lean_sdpa_attention(module, q, k, v, mask, dropout=0.3)
    torch.manual_seed(11)
    draws = MaskDraws(0.3, "fast")
    keep = draws.keep(torch.empty(2, 3, 6, 6))
    noise = keep.float() / (1 - round(0.3 * 65536) / 65536)
    assert draws.fast and not keep.all()
    probs = torch.softmax(q @ k.transpose(-1, -2) / 2 + mask, -1)
    expected = ((probs * noise) @ v).transpose(1, 2)
    torch.testing.assert_close(out, expected)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), (q, k, v))
    expected_grads = torch.autograd.grad((expected * weights).sum(), (q, k, v))
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_bench_builds_with_fast_draws_by_default(tiny_models, glue_dir):
    """The default `dropout_draws` is fast: every dropout and the attention modules draw fast masks."""
    from bench.build import build_model
    from bench.resolve import build_config
    from bench.tasks import get_task

    cfg = build_config(
        {"method": "lora", "model": tiny_models["bert"], "task": "rte", "data_dir": str(glue_dir)}
    )
    model = build_model(cfg, get_task("rte")).model
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    attention = [m for m in model.modules() if type(m).__name__ == "BertSelfAttention"]
    assert dropouts and all(type(m) is LeanDropout and m.draws == "fast" for m in dropouts)
    assert attention and all(m.bench_dropout_draws == "fast" for m in attention)


def test_fast_draws_do_not_depend_on_whether_a_gradient_is_wanted():
    """A layer recomputed under activation checkpointing may see its input require a gradient only then: its
    dropout and attention must draw the masks of its first forward either way."""
    dropout = nn.Dropout(0.3)
    use_lean_dropout(dropout, "fast")
    module = nn.Module()
    module.bench_dropout_draws = "fast"
    x = torch.randn(2, 2, 7, 4)
    outs = []
    for grad in (False, True, None):  # None: under no_grad
        torch.manual_seed(4)
        y = x.clone().requires_grad_(bool(grad))
        with torch.set_grad_enabled(grad is not None):
            attended, _ = lean_sdpa_attention(module, y, y, y, None, dropout=0.3)
            outs.append((dropout(y).detach(), attended.detach()))
    for dropped, attended in outs[1:]:
        assert torch.equal(dropped, outs[0][0]) and torch.equal(attended, outs[0][1])
