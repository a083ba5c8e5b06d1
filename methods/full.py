"""Full fine-tuning: every parameter trains."""

from dataclasses import dataclass

from methods import register
from methods.base import Method


@dataclass(frozen=True)
class FullConfig:
    pass


@register
class Full(Method):
    name = "full"
    display_name = "Full FT"
    summary = "full fine-tuning: all parameters"
    config_cls = FullConfig
    needs_family = False  # any encoder transformers can load
    default_lr = 2e-5
    frozen_backbone = False
    reference = True
    anchor = True

    def attach(self, model, cfg, ctx):
        model.requires_grad_(True)
        return model
