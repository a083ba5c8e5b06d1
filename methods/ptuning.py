"""P-tuning v2 (Liu et al. 2022): a trainable key and value prefix of length p at every layer.

Our own injection rather than peft's PrefixTuningConfig: peft feeds the prefix as a KV cache, which
on transformers 5 also shifts BERT's position ids by p and breaks RoBERTa token classification
(transformers#26578). Here the prefix is concatenated inside attention through a registered
attention function, so masks and heads are untouched, and positions too unless `position_shift` asks for
the reference's shift by p."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench.families.base import eager_attention
from bench.lean import LEAN_SDPA, lean_sdpa_attention
from methods import register
from methods.base import Method, check_range

ATTN_NAME = "bench_prefix_sdpa"


EAGER_NAME = "bench_prefix_eager"  # the same with attention weights returned (for `bench heads`)


def with_prefix(module, query, key, value, attention_mask):
    """Keys and values with the layer's prefix in front, the mask widened to let every query see it.
    Returns (key, value, mask, p); unchanged (p = 0) for a module without a prefix."""
    slot = getattr(module, "bench_prefix", None)
    if slot is None:
        return key, value, attention_mask, 0
    k, v = slot.keys_values()  # (heads, p, head_dim) each
    b = query.shape[0]
    # Dropout per example (the reference drops out the (B, p, ...) past key/values it builds per batch).
    k, v = (slot.encoder.dropout(t.unsqueeze(0).expand(b, -1, -1, -1)) for t in (k, v))
    key = torch.cat([k.to(key.dtype), key], dim=2)
    value = torch.cat([v.to(value.dtype), value], dim=2)
    if attention_mask is not None:  # every query may attend to every prefix slot
        pad = attention_mask.new_ones if attention_mask.dtype == torch.bool else attention_mask.new_zeros
        attention_mask = torch.cat([pad((*attention_mask.shape[:-1], k.shape[2])), attention_mask], dim=-1)
    return key, value, attention_mask, k.shape[2]


def _prefix_sdpa(module, query, key, value, attention_mask, **kwargs):
    from transformers.integrations.sdpa_attention import (
        sdpa_attention_forward,  # lazy: `bench methods` lists this module
    )

    slot = getattr(module, "bench_prefix", None)
    attention = lean_sdpa_attention if slot is not None and slot.lean else sdpa_attention_forward
    key, value, attention_mask, _ = with_prefix(module, query, key, value, attention_mask)
    return attention(module, query, key, value, attention_mask, **kwargs)


def _prefix_eager(module, query, key, value, attention_mask, **kwargs):
    """Eager attention with the prefix; the weights returned cover the input tokens only."""
    key, value, attention_mask, p = with_prefix(module, query, key, value, attention_mask)
    out, weights = eager_attention(module, query, key, value, attention_mask, **kwargs)
    return out, None if weights is None else weights[..., p:]


def eager_implementation(config) -> str:
    """The attention implementation that returns attention weights for a model's config: the prefixed eager
    one where P-tuning v2 attached (the weights cover the input tokens only), else transformers' eager."""
    return EAGER_NAME if getattr(config, "_attn_implementation", None) in (ATTN_NAME, EAGER_NAME) else "eager"


def _register_attention():
    from transformers import AttentionInterface  # lazy: `bench methods` lists this module
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask, sdpa_mask

    AttentionInterface.register(ATTN_NAME, _prefix_sdpa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_NAME, sdpa_mask)
    AttentionInterface.register(EAGER_NAME, _prefix_eager)
    ALL_MASK_ATTENTION_FUNCTIONS.register(EAGER_NAME, eager_mask)


class PrefixEncoder(nn.Module):
    """Every layer's key and value prefix from one table, as the reference's PrefixEncoder: an (p, L*2*H)
    embedding, or with reparameterisation an (p, H) embedding through ONE MLP shared by all layers,
    H -> m -> L*2*H (THUDM/P-tuning-v2 model/prefix_encoder.py, prefix_projection)."""

    def __init__(
        self, length: int, layers: int, heads: int, head_dim: int, dropout: float, std: float, mlp_hidden: int
    ):
        super().__init__()
        hidden = heads * head_dim
        self.shape = (length, layers, 2, heads, head_dim)
        self.embedding = nn.Parameter(
            torch.randn(length, hidden if mlp_hidden else layers * 2 * hidden) * std
        )
        self.mlp = (
            nn.Sequential(
                nn.Linear(hidden, mlp_hidden), nn.Tanh(), nn.Linear(mlp_hidden, layers * 2 * hidden)
            )
            if mlp_hidden
            else None
        )
        self.dropout = nn.Dropout(dropout)
        self.current: torch.Tensor | None = (
            None  # (L, 2, heads, p, head_dim), computed once per model forward
        )

    def forward(self) -> torch.Tensor:
        x = self.embedding if self.mlp is None else self.mlp(self.embedding)
        return x.view(*self.shape).permute(1, 2, 3, 0, 4)

    def refresh(self, module, args, kwargs):
        """Model forward pre-hook: build this forward's prefixes once for all layers."""
        self.current = self()
        return args, kwargs


class LayerSlot:
    """What one attention module holds: the shared encoder (not registered as its submodule, so the
    encoder's parameters are owned and counted once), the layer's index, and whether the model was loaded
    with bench's lean attention (bench/lean.py), which the prefixed attention then uses too."""

    def __init__(self, encoder: PrefixEncoder, layer: int, lean: bool = False):
        self.encoder, self.layer, self.lean = encoder, layer, lean

    def keys_values(self):
        current = self.encoder.current
        return current[self.layer, 0], current[self.layer, 1]


def shift_positions(length: int):
    """Model forward pre-hook: position ids as if the prefix were p tokens before the input, which is what
    the reference gets by passing the prefix as past_key_values (BERT: p..p+T-1; RoBERTa: p + its
    padding-aware positions)."""

    def hook(module, args, kwargs):
        if kwargs.get("position_ids") is not None:
            return args, kwargs
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        embeddings = module.base_model.embeddings
        padding_idx = getattr(embeddings, "padding_idx", None)
        if padding_idx is None:  # absolute positions from 0 (BERT)
            t = input_ids.shape[1]
            kwargs["position_ids"] = torch.arange(length, length + t, device=input_ids.device).expand(
                input_ids.shape[0], -1
            )
        else:  # RoBERTa: positions count non-pad tokens from padding_idx + 1
            mask = input_ids.ne(padding_idx).int()
            kwargs["position_ids"] = ((torch.cumsum(mask, dim=1) + length) * mask).long() + padding_idx
        return args, kwargs

    return hook


@dataclass(frozen=True)
class PtuningConfig:
    prefix_length: int = 20
    dropout: float = 0.1
    init_std: float | None = None  # None: the model's initializer_range (the reference's nn.Embedding: 1.0)
    reparameterize: int = (
        0  # hidden size m of the shared reparameterisation MLP; 0: none (the released scripts)
    )
    position_shift: bool = False  # shift position ids by p, as the reference's past_key_values route does

    def __post_init__(self):
        if self.prefix_length < 1:
            raise ValueError(f"prefix_length {self.prefix_length} must be at least 1")
        if self.reparameterize < 0:
            raise ValueError(f"reparameterize {self.reparameterize} must be 0 (none) or a hidden size")
        check_range("dropout", self.dropout, 0, 1)
        check_range("init_std", self.init_std, 0, float("inf"))


@register
class Ptuning(Method):
    name = "ptuning"
    display_name = "P-tuning v2"
    summary = "deep prefix (P-tuning v2): p keys+values at every layer (p*L*2H params)"
    config_cls = PtuningConfig
    knob = "prefix_length"
    knob_label = "prefix length p"
    knob_values = (1, 2, 4, 8, 16, 32, 64, 128)
    default_lr = 1e-2

    def no_decay(self, name: str, param) -> bool:
        # The prefix is an embedding: not decayed (the reparameterisation MLP's matrices are).
        return super().no_decay(name, param) or name.endswith("prefix_encoder.embedding")

    def expected_params(self, model_config, task, family, cfg, special_positions):
        L, H, p, m = (
            model_config.num_hidden_layers,
            model_config.hidden_size,
            cfg.prefix_length,
            cfg.reparameterize,
        )
        if not m:
            return p * L * 2 * H
        return p * H + H * m + m + m * L * 2 * H + L * 2 * H  # one embedding and one MLP for all layers

    def unsupported(self, ctx, cfg):
        fam = ctx.family
        if fam.attention_path is None:
            return f"{fam.name}: {fam.attention_note}"
        if cfg.position_shift and not fam.absolute_positions:
            return f"position_shift=true: {fam.name} has no absolute position embeddings to shift"
        return None

    def attach(self, model, cfg: PtuningConfig, ctx):
        _register_attention()
        conf = model.config
        heads = conf.num_attention_heads
        layers = ctx.family.layers(model)
        std = conf.initializer_range if cfg.init_std is None else cfg.init_std
        encoder = PrefixEncoder(
            cfg.prefix_length,
            len(layers),
            heads,
            conf.hidden_size // heads,
            cfg.dropout,
            std,
            cfg.reparameterize,
        )
        model.base_model.prefix_encoder = encoder  # registered once: saved, moved, counted with the model
        encoder.requires_grad_(True)
        model.register_forward_pre_hook(encoder.refresh, with_kwargs=True)
        if cfg.position_shift:
            model.register_forward_pre_hook(shift_positions(cfg.prefix_length), with_kwargs=True)
        lean = model.config._attn_implementation == LEAN_SDPA
        for i, layer in enumerate(layers):
            ctx.family.attention_module(layer).bench_prefix = LayerSlot(encoder, i, lean)
        model.config._attn_implementation = ATTN_NAME
        return model
