"""Houlsby adapter (Houlsby et al. 2019): two bottleneck adapters per layer.

Our own module: AdapterHub's `adapters` package (double_seq_bn) pins transformers 4.57."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from methods import register
from methods.base import Method


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


class Followed(nn.Module):
    """Stands in for the module at an adapter site (the family's: BERT's sub-layer output dropout,
    ModernBERT's
    output projection), so the adapter runs on a sub-layer's output after projection + dropout and before the
    residual add."""

    def __init__(self, inner: nn.Module, adapter: Bottleneck):
        super().__init__()
        self.inner = inner
        self.adapter = adapter

    def forward(self, x):
        return self.adapter(self.inner(x))


def is_norm(module: nn.Module) -> bool:
    """LayerNorm-like by type, whatever a family names it (LayerNorm, attn_norm, final_norm, ...)."""
    return isinstance(module, nn.LayerNorm) or type(module).__name__.endswith(("LayerNorm", "RMSNorm"))


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
        norms = (
            family.norm_params(model_config) if cfg.train_layernorm else 0
        )  # BERT: 2 per layer + embeddings
        return len(family.adapter_sites) * L * (2 * H * m + m + H) + norms

    def unsupported(self, ctx, cfg):
        if not ctx.family.adapter_sites:
            return f"{ctx.family.name} names no adapter sites (bench/families/)"
        return None

    def attach(self, model, cfg: AdapterConfig, ctx):
        hidden = model.config.hidden_size
        for layer in ctx.family.layers(model):
            for site in ctx.family.adapter_sites:
                parent_path, _, attr = site.rpartition(".")
                parent = layer.get_submodule(parent_path)
                wrapped = Followed(getattr(parent, attr), Bottleneck(hidden, cfg.size, cfg.init_std))
                wrapped.adapter.requires_grad_(True)
                setattr(parent, attr, wrapped)
        if cfg.train_layernorm:
            for module in model.base_model.modules():
                if is_norm(module):
                    module.requires_grad_(True)
        return model
