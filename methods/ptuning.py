"""P-tuning v2 (Liu et al. 2022): a trainable key and value prefix of length p at every layer.

Our own injection rather than peft's PrefixTuningConfig: peft feeds the prefix as a KV cache, which
on transformers 5 also shifts BERT's position ids by p and breaks RoBERTa token classification
(transformers#26578). Here the prefix is concatenated inside attention through a registered
attention function, so positions, masks and heads are untouched."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from methods import register
from methods.base import Method, encoder_layers

ATTN_NAME = "bench_prefix_sdpa"


def _prefix_sdpa(module, query, key, value, attention_mask, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    prefix = getattr(module, "bench_prefix", None)
    if prefix is not None:
        k, v = prefix()  # (heads, p, head_dim) each
        b = query.shape[0]
        key = torch.cat([k.unsqueeze(0).expand(b, -1, -1, -1).to(key.dtype), key], dim=2)
        value = torch.cat([v.unsqueeze(0).expand(b, -1, -1, -1).to(value.dtype), value], dim=2)
        if attention_mask is not None:  # every query may attend to every prefix slot
            pad = attention_mask.new_ones if attention_mask.dtype == torch.bool else attention_mask.new_zeros
            attention_mask = torch.cat([pad((*attention_mask.shape[:-1], k.shape[1])), attention_mask], dim=-1)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def _register_attention():
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTN_NAME, _prefix_sdpa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_NAME, sdpa_mask)


class Prefix(nn.Module):
    """One layer's prefix: p key vectors and p value vectors, optionally through an MLP."""

    def __init__(self, length: int, heads: int, head_dim: int, dropout: float, std: float, mlp_hidden: int):
        super().__init__()
        hidden = heads * head_dim
        self.shape = (length, heads, head_dim)
        self.embedding = nn.Parameter(torch.randn(length, 2 * hidden if not mlp_hidden else hidden) * std)
        self.mlp = (nn.Sequential(nn.Linear(hidden, mlp_hidden), nn.Tanh(), nn.Linear(mlp_hidden, 2 * hidden))
                    if mlp_hidden else None)
        self.dropout = nn.Dropout(dropout)

    def forward(self):
        x = self.embedding if self.mlp is None else self.mlp(self.embedding)
        k, v = self.dropout(x).chunk(2, dim=-1)
        return (t.view(*self.shape).transpose(0, 1) for t in (k, v))


@dataclass(frozen=True)
class PtuningConfig:
    prefix_length: int = 20
    dropout: float = 0.1
    init_std: float | None = None  # None: the model's initializer_range
    reparameterize: int = 0  # hidden size of the optional reparameterisation MLP; 0: none

    def __post_init__(self):
        if self.prefix_length < 1:
            raise ValueError(f"prefix_length {self.prefix_length} must be at least 1")


@register
class Ptuning(Method):
    name = "ptuning"
    summary = "deep prefix (P-tuning v2): p keys+values at every layer (p*L*2H params)"
    config_cls = PtuningConfig
    knob = "prefix_length"
    knob_label = "prefix length p"
    knob_values = (1, 2, 4, 8, 16, 32, 64, 128)
    default_lr = 1e-2

    def no_decay(self, name: str, param) -> bool:
        # The prefix is an embedding: not decayed (the reparameterisation MLP's matrices are).
        return super().no_decay(name, param) or name.endswith("bench_prefix.embedding")

    def expected_params(self, model_config, task, family, cfg, special_positions):
        L, H, p, m = model_config.num_hidden_layers, model_config.hidden_size, cfg.prefix_length, cfg.reparameterize
        if not m:
            return p * L * 2 * H
        return L * (p * H + H * m + m + m * 2 * H + 2 * H)  # one embedding + MLP per layer

    def attach(self, model, cfg: PtuningConfig, ctx):
        _register_attention()
        conf = model.config
        heads = conf.num_attention_heads
        std = conf.initializer_range if cfg.init_std is None else cfg.init_std
        for layer in encoder_layers(model):
            attn = layer.attention.self
            attn.bench_prefix = Prefix(cfg.prefix_length, heads, conf.hidden_size // heads, cfg.dropout, std,
                                       cfg.reparameterize)
            attn.bench_prefix.requires_grad_(True)
        model.config._attn_implementation = ATTN_NAME
        return model
