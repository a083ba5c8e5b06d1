"""Head only (linear probe): the frozen encoder under a trained task head. The smallest anchor of an
intrinsic-dimension curve."""

from dataclasses import dataclass

from methods import register
from methods.base import Method


@dataclass(frozen=True)
class HeadConfig:
    pass


@register
class Head(Method):
    name = "head"
    display_name = "Head only"
    summary = "task head only (linear probe): the encoder stays frozen"
    config_cls = HeadConfig
    default_lr = 1e-3
    needs_family = False
    anchor = True
    in_default_lists = False

    def expected_params(self, model_config, task, family, cfg, special_positions):
        return 0

    def attach(self, model, cfg, ctx):
        return model  # the backbone is already frozen; the runner trains the head
