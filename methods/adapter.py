"""Houlsby adapter (Houlsby et al. 2019): two bottleneck adapters per layer.

Our own module: AdapterHub's `adapters` package (double_seq_bn) pins transformers 4.57."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from methods import register
from methods.base import Method, encoder_layers


class Bottleneck(nn.Module):
    """x + up(GELU(down(x))), initialised near the identity."""

    def __init__(self, hidden: int, size: int, init_std: float):
        super().__init__()
        self.down = nn.Linear(hidden, size)
        self.up = nn.Linear(size, hidden)
        self.act = nn.GELU()
        for lin in (self.down, self.up):
            nn.init.trunc_normal_(lin.weight, std=init_std, a=-2 * init_std, b=2 * init_std)
            nn.init.zeros_(lin.bias)

    def forward(self, x):
        return x + self.up(self.act(self.down(x)))


class AfterDropout(nn.Module):
    """Stands in for a sub-layer's output dropout, so the adapter runs after projection + dropout
    and before the residual add + LayerNorm (BertSelfOutput / BertOutput call self.dropout there)."""

    def __init__(self, dropout: nn.Module, adapter: Bottleneck):
        super().__init__()
        self.dropout = dropout
        self.adapter = adapter

    def forward(self, x):
        return self.adapter(self.dropout(x))


@dataclass(frozen=True)
class AdapterConfig:
    size: int = 64  # bottleneck m; the paper picks per task from {8, 64, 256}
    init_std: float = 1e-3
    train_layernorm: bool = True  # the paper trains every LayerNorm gain and bias

    def __post_init__(self):
        if self.size < 1:
            raise ValueError(f"size {self.size} must be at least 1")
        if self.init_std <= 0:
            raise ValueError(f"init_std {self.init_std} must be positive")


@register
class Adapter(Method):
    name = "adapter"
    display_name = "Adapter"
    summary = "Houlsby bottleneck adapters after attention and FFN outputs (+ LayerNorms)"
    config_cls = AdapterConfig
    knob = "size"
    knob_label = "bottleneck m"
    knob_values = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    default_lr = 1e-3

    def expected_params(self, model_config, task, family, cfg, special_positions):
        L, H, m = model_config.num_hidden_layers, model_config.hidden_size, cfg.size
        layernorms = (4 * L * H + 2 * H) if cfg.train_layernorm else 0  # 2 per layer + embeddings, gain and bias
        return 2 * L * (2 * H * m + m + H) + layernorms

    def attach(self, model, cfg: AdapterConfig, ctx):
        hidden = model.config.hidden_size
        for layer in encoder_layers(model):
            for sub in (layer.attention.output, layer.output):
                sub.dropout = AfterDropout(sub.dropout, Bottleneck(hidden, cfg.size, cfg.init_std))
                sub.dropout.adapter.requires_grad_(True)
        if cfg.train_layernorm:
            for name, p in model.base_model.named_parameters():
                if "LayerNorm" in name:
                    p.requires_grad_(True)
        return model
