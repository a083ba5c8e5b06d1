"""LoRA (Hu et al. 2021) through peft: W + (alpha/r) B A on the chosen projections."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bench.errors import BenchError, first_line
from methods import register
from methods.base import Method, check_range


@dataclass(frozen=True)
class LoraOptions:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0  # the LoRA paper's GLUE scripts (microsoft/LoRA examples/NLU) use no LoRA dropout
    # Comma-separated projection roles (query, key, value, attention_output, intermediate, output: each family
    # maps them to its modules; ModernBERT's fused Wqkv serves query, key and value alike) or module names.
    target_modules: str = "query,value"

    def __post_init__(self):
        if self.r < 1:
            raise ValueError(f"r {self.r} must be at least 1")
        check_range("dropout", self.dropout, 0, 1)
        if self.alpha <= 0:
            raise ValueError(f"alpha {self.alpha} must be positive")
        if not [t for t in self.target_modules.split(",") if t.strip()]:
            raise ValueError(f"target_modules {self.target_modules!r} names no module")


def names(cfg: LoraOptions) -> list[str]:
    return [t.strip() for t in cfg.target_modules.split(",") if t.strip()]


def target_pattern(cfg: LoraOptions, family) -> str:
    """One regex over module names (peft full-matches a string target): the family's module for each role,
    inside the encoder's blocks only (so "output" never also hits the attention's output.dense), and any
    other name as a module-name suffix."""
    paths = sorted(
        {
            re.escape(family.projection(t)) if family.projection(t) else rf"(?:.*\.)?{re.escape(t)}"
            for t in names(cfg)
        }
    )
    return rf".*\.{re.escape(family.layers_path)}\.\d+\.(?:{'|'.join(paths)})"


@register
class Lora(Method):
    name = "lora"
    display_name = "LoRA"
    summary = "low-rank updates on W_q, W_v via peft (L*2*2*H*r params)"
    config_cls = LoraOptions
    knob = "r"
    knob_label = "rank r"
    knob_values = (1, 2, 4, 8, 16, 32, 64)
    default_lr = 5e-4

    def expected_params(self, model_config, task, family, cfg, special_positions):
        modules = {family.fused.get(t, t) for t in names(cfg)}
        if any(family.projection(t) is None for t in modules):
            return None  # a module name rather than a role: no closed form
        return model_config.num_hidden_layers * sum(
            cfg.r * sum(family.projection_shape(t, model_config)) for t in modules
        )

    def unsupported(self, ctx, cfg):
        return (
            None
            if ctx.family.projection("query") or ctx.family.projection("value")
            else (f"{ctx.family.name} names no attention projections (bench/families/)")
        )

    def attach(self, model, cfg: LoraOptions, ctx):
        # lazy: peft takes seconds to import, and every command that lists methods loads this module
        from peft import LoraConfig, inject_adapter_in_model

        from methods.lora.fused import fuse  # lazy: it subclasses peft's LoRA layer (imports peft)

        # inject_adapter_in_model keeps the HF model class (no PeftModel wrapper, no duplicated
        # "modules_to_save" head copy): the head is trained and counted exactly once.
        config = LoraConfig(
            r=cfg.r,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=target_pattern(cfg, ctx.family),
            bias="none",
        )
        try:
            model = inject_adapter_in_model(config, model)
        except ValueError as e:  # peft: a target that matches no module of this model
            raise BenchError(f"lora: target_modules {cfg.target_modules!r}: {first_line(e)}") from None
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)

        fuse(model)  # the same arithmetic in one autograd node per module (methods/lora/fused.py)
        return model
