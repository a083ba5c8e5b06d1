"""LoRA (Hu et al. 2021) through peft: W + (alpha/r) B A on the chosen projections."""

from __future__ import annotations

from dataclasses import dataclass

from methods import register
from methods.base import Method, check_range


@dataclass(frozen=True)
class LoraOptions:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0  # the LoRA paper's GLUE scripts (microsoft/LoRA examples/NLU) use no LoRA dropout
    target_modules: str = "query,value"  # comma-separated module names

    def __post_init__(self):
        if self.r < 1:
            raise ValueError(f"r {self.r} must be at least 1")
        check_range("dropout", self.dropout, 0, 1)
        if self.alpha <= 0:
            raise ValueError(f"alpha {self.alpha} must be positive")
        if not [t for t in self.target_modules.split(",") if t.strip()]:
            raise ValueError(f"target_modules {self.target_modules!r} names no module")


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
        targets = [t for t in cfg.target_modules.split(",") if t.strip()]
        return model_config.num_hidden_layers * len(targets) * 2 * model_config.hidden_size * cfg.r

    def attach(self, model, cfg: LoraOptions, ctx):
        from peft import LoraConfig, inject_adapter_in_model

        targets = [t.strip() for t in cfg.target_modules.split(",") if t.strip()]
        # inject_adapter_in_model keeps the HF model class (no PeftModel wrapper, no duplicated
        # "modules_to_save" head copy): the head is trained and counted exactly once.
        config = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                            target_modules=targets, bias="none")
        model = inject_adapter_in_model(config, model)
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)
        from methods.lora.fused import fuse

        fuse(model)  # the same arithmetic in one autograd node per module (methods/lora/fused.py)
        return model
