"""DeBERTa-v2/v3 (He et al. 2021, 2023): disentangled relative attention (content and position projections
inside its own attention code, not transformers' attention interface), a new ContextPooler + linear head."""

import types

import torch

from bench.families import register
from bench.families.base import BERT_PROJECTIONS, Family, FirstToken


class _GatherKeepingIndex(torch.autograd.Function):
    """torch.gather along the last dimension whose backward keeps only the index: torch's gather keeps its
    whole input for the backward, only to read its shape, and here that input is a (batch x heads, T, 2k)
    table of position scores per layer (30 MiB at batch 16, T 60, k 256)."""

    @staticmethod
    def forward(ctx, source, index):
        ctx.save_for_backward(index)
        ctx.shape = source.shape
        return source.gather(-1, index)

    @staticmethod
    def backward(ctx, grad):
        (index,) = ctx.saved_tensors
        return grad.new_zeros(ctx.shape).scatter_add_(-1, index, grad), None


def _position_scores(rows, positions, heads: int, index):
    """Each (example, head)'s rows (batch x heads, T, d) against its head's relative-position vectors
    (heads, 2k, d), gathered at `index` (1, 1, T, T'): (batch x heads, T, T'). The batch is folded into the
    rows of one product per head, so the positions are shared, not copied per example."""
    bh, t, d = rows.shape
    b = bh // heads
    folded = rows.view(b, heads, t, d).transpose(0, 1).reshape(heads, b * t, d)
    scores = torch.bmm(folded, positions.transpose(-1, -2)).view(heads, b, t, -1)
    picked = _GatherKeepingIndex.apply(scores, index.expand(heads, b, t, index.size(-1)))
    return picked.transpose(0, 1).reshape(bh, t, -1)


def lean_disentangled_attention_bias(
    self, query_layer, key_layer, relative_pos, rel_embeddings, scale_factor
):
    """transformers' DisentangledSelfAttention.disentangled_attention_bias, the same sums without its two
    memory costs: it repeats the position queries and keys once per example (two (batch x heads, 2k, d)
    copies per layer, kept for the backward) and its gathers keep their (batch x heads, T, 2k) inputs. At
    DeBERTa-v3-large, batch 16, T 60: 124 MiB per layer, 2.9 GiB over 24 layers, for frozen and full training
    alike. Falls back to transformers' code for a per-example relative_pos, which it does not pass itself."""
    from transformers.models.deberta_v2.modeling_deberta_v2 import (  # lazy: transformers is slow to import
        build_relative_position,
        build_rpos,
        scaled_size_sqrt,
    )

    if relative_pos is None:
        relative_pos = build_relative_position(
            query_layer,
            key_layer,
            bucket_size=self.position_buckets,
            max_position=self.max_relative_positions,
        )
    if relative_pos.dim() not in (2, 3) or (relative_pos.dim() == 3 and relative_pos.size(0) != 1):
        return type(self).disentangled_attention_bias(
            self, query_layer, key_layer, relative_pos, rel_embeddings, scale_factor
        )
    relative_pos = relative_pos.view(1, 1, *relative_pos.shape[-2:]).to(query_layer.device, torch.long)
    heads, span = self.num_attention_heads, self.pos_ebd_size
    rel_embeddings = rel_embeddings[0 : span * 2, :].unsqueeze(0)
    key_proj = self.key_proj if self.share_att_key else getattr(self, "pos_key_proj", None)
    query_proj = self.query_proj if self.share_att_key else getattr(self, "pos_query_proj", None)
    score = 0
    if "c2p" in self.pos_att_type:  # content -> position
        pos_key = self.transpose_for_scores(key_proj(rel_embeddings), heads)
        c2p_pos = torch.clamp(relative_pos + span, 0, span * 2 - 1)
        c2p = _position_scores(query_layer, pos_key, heads, c2p_pos)
        score += c2p / scaled_size_sqrt(pos_key, scale_factor).to(dtype=c2p.dtype)
    if "p2c" in self.pos_att_type:  # position -> content
        pos_query = self.transpose_for_scores(query_proj(rel_embeddings), heads)
        r_pos = build_rpos(
            query_layer, key_layer, relative_pos, self.max_relative_positions, self.position_buckets
        )
        p2c_pos = torch.clamp(-r_pos + span, 0, span * 2 - 1)
        p2c = _position_scores(key_layer, pos_query, heads, p2c_pos.view(1, 1, *p2c_pos.shape[-2:]))
        score += p2c.transpose(-1, -2) / scaled_size_sqrt(pos_query, scale_factor).to(dtype=p2c.dtype)
    return score


@register
class DebertaV2(Family):
    name = "deberta-v2"
    model_types = ("deberta-v2",)
    aliases = {
        "deberta-v3-base": "microsoft/deberta-v3-base",
        "deberta-v3-large": "microsoft/deberta-v3-large",
    }
    projections = {
        **BERT_PROJECTIONS,
        "query": "attention.self.query_proj",
        "key": "attention.self.key_proj",
        "value": "attention.self.value_proj",
    }
    attention_implementation = "eager"
    attention_path = None
    attention_note = (
        "its disentangled attention computes scores in its own code, not through transformers' "
        "attention interface, so a key/value prefix would never be read"
    )
    absolute_positions = False
    tiny_config = {
        "max_position_embeddings": 160,
        "relative_attention": True,
        "position_buckets": 16,
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "pos_att_type": ["p2c", "c2p"],
        "position_biased_input": False,
        "type_vocab_size": 0,
        "pooler_hidden_size": 32,
        "pooler_dropout": 0.0,
        "max_relative_positions": -1,
    }

    def lean_code(self, model) -> None:
        for module in model.modules():
            if type(module).__name__ == "DisentangledSelfAttention" and module.relative_attention:
                module.disentangled_attention_bias = types.MethodType(
                    lean_disentangled_attention_bias, module
                )

    def max_length(self, config):
        # Relative positions: no absolute table bounds the length unless the model also adds absolute ones.
        return config.max_position_embeddings if getattr(config, "position_biased_input", True) else None

    def rel_norm(self, config) -> bool:
        return "layer_norm" in str(getattr(config, "norm_rel_ebd", "none")) and config.relative_attention

    def norm_params(self, config):
        extra = 2 * config.hidden_size if self.rel_norm(config) else 0
        return super().norm_params(config) + extra  # + the relative-position embeddings' LayerNorm

    def bias_params(self, config):
        return super().bias_params(config) + (config.hidden_size if self.rel_norm(config) else 0)

    def linear_sequence_head(self, model, task):
        model.pooler = FirstToken()  # classifier(dropout(first token)) instead of classifier(dropout(pooler))
        return []
