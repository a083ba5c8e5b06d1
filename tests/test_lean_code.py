"""Family.lean_code: DeBERTa-v2's position bias without per-example copies of the position vectors and
without gathers keeping their inputs; ModernBERT's attention values copied out of the fused Wqkv output. The
reference is transformers' own code: the same model, a copy of it left as shipped, must give the same logits
and gradients; the memory the autograd graph keeps must drop by what the shipped code holds needlessly,
counted here from the shapes."""

import copy

import pytest
import torch
from transformers import (
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    ModernBertConfig,
    ModernBertForSequenceClassification,
)

from bench.families import families

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


def step(model, seed=1):
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
    torch.manual_seed(seed)  # the same dropout masks in both models: lean code draws no random numbers
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1, 2, 1]))
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
