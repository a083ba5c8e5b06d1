"""Diff pruning (Guo et al., ACL 2021): every pretrained tensor becomes theta0 + z * w, with w a trainable
diff and z a hard-concrete gate (Louizos et al. 2018) whose expected L0 norm is added to the loss. At
`project_at` of training the diff is projected onto the `sparsity` largest |z * w| entries (global
magnitude pruning) and the mask is fixed; the remaining steps fine-tune the kept entries (the paper's
second stage). The structured variant multiplies each entry's gate by one gate per tensor.

Our own module: no maintained library implements it. It uses every optimisation hook of the interface:
parameter groups (the gate logits have their own lr), a loss term (the L0 penalty) and a step hook (the
projection). The count it reports after training is the nonzero diff entries (the paper's %Param)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from methods import register
from methods.base import Method

GAMMA, ZETA, BETA = -1.5, 1.5, 1.0  # hard-concrete stretch interval (l, r) and temperature
CLOSED = 30.0  # a gate logit that makes z exactly 0 or 1 whatever noise is drawn


class DiffGate(nn.Module):
    """A parametrization: original -> original + z * diff."""

    def __init__(self, shape, alpha_init: float, structured: bool):
        super().__init__()
        self.diff = nn.Parameter(torch.zeros(shape))
        self.log_alpha = nn.Parameter(torch.full(shape, alpha_init))
        self.group_log_alpha = nn.Parameter(torch.full((), alpha_init)) if structured else None

    @staticmethod
    def gate(log_alpha, sample: bool):
        if sample:  # a stretched, clipped binary-concrete sample
            u = torch.rand_like(log_alpha).clamp(1e-6, 1 - 1e-6)
            s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / BETA)
        else:  # its deterministic test-time value
            s = torch.sigmoid(log_alpha)
        return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)

    def z(self):
        z = self.gate(self.log_alpha, self.training)
        if self.group_log_alpha is not None:
            z = z * self.gate(self.group_log_alpha, self.training)
        return z

    def forward(self, original):
        return original + self.z() * self.diff

    def expected_l0(self):
        """P(z != 0) summed over entries (Louizos et al., eq. 12). Structured: the paper's product of the
        entry's and its tensor's open probabilities; the authors' script instead adds the tensor gates'
        probabilities to the entries' unscaled sum (a different penalty: ours follows the paper)."""
        shift = BETA * math.log(-GAMMA / ZETA)
        p = torch.sigmoid(self.log_alpha - shift)
        if self.group_log_alpha is not None:
            p = p * torch.sigmoid(self.group_log_alpha - shift)
        return p.sum()


@dataclass(frozen=True)
class DiffPruneConfig:
    sparsity: float = 0.005  # target share of nonzero diff entries after projection (the paper's 0.5%)
    l0_weight: float = 1.25e-7  # lambda on the expected L0 norm (summed over entries)
    alpha_init: float = 5.0  # initial gate logit: gates start open
    alpha_lr: float = (
        0.1  # own lr of the gate logits: the AdamW lr hard-coded in the authors' run_glue_diffpruning.py
    )
    project_at: float = 0.5  # fraction of training steps after which the diff is projected and the mask fixed
    structured: bool = False  # also one gate per tensor (the paper's structured variant)
    embeddings: bool = True  # diff the embedding tables too (the paper diffs every pretrained tensor)

    def __post_init__(self):
        if not 0 < self.sparsity <= 1:
            raise ValueError(f"sparsity {self.sparsity} must be in (0, 1]")
        if not 0 < self.project_at <= 1:
            raise ValueError(f"project_at {self.project_at} must be in (0, 1]")
        if self.l0_weight < 0 or self.alpha_lr <= 0:
            raise ValueError(f"l0_weight {self.l0_weight} must be >= 0 and alpha_lr {self.alpha_lr} > 0")


def gates(model) -> list[DiffGate]:
    return [m for m in model.modules() if isinstance(m, DiffGate)]


@register
class DiffPrune(Method):
    name = "diffprune"
    display_name = "Diff pruning"
    frozen_backbone = False
    needs_family = False  # a diff on every pretrained tensor, whatever the architecture
    summary = "Diff pruning: a sparse diff on every pretrained tensor (L0 gates, projected to 0.5%)"
    config_cls = DiffPruneConfig
    knob = "sparsity"
    knob_label = "nonzero share of the diff"
    knob_values = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)
    default_lr = 1e-3
    in_default_lists = False  # three copies of the backbone: opt-in for curves and benchmarks

    def attach(self, model, cfg: DiffPruneConfig, ctx):
        base = model.base_model
        targets = [
            (name, module)
            for name, module in base.named_modules()
            if cfg.embeddings or "embeddings" not in name
        ]
        for _, module in targets:
            for pname, p in list(module.named_parameters(recurse=False)):
                gate = DiffGate(p.shape, cfg.alpha_init, cfg.structured).to(p.device)
                parametrize.register_parametrization(module, pname, gate, unsafe=True)
        for gate in gates(model):
            gate.requires_grad_(True)
        return model

    def expected_params(self, model_config, task, family, cfg, special_positions):
        return (
            None  # 2-3 per backbone entry while training; the nonzero diff after it (counts_after_training)
        )

    def final_params(self, model, cfg):
        return max(
            1, math.ceil(cfg.sparsity * sum(g.diff.numel() for g in gates(model)))
        )  # as project() keeps

    def param_groups(self, model, cfg, weight_decay: float) -> list[dict]:
        groups = super().param_groups(model, cfg, weight_decay)
        alphas = {id(p) for g in gates(model) for p in (g.log_alpha, g.group_log_alpha) if p is not None}
        diffs = {id(g.diff) for g in gates(model)}
        for g in groups:
            g["params"] = [p for p in g["params"] if id(p) not in alphas | diffs]
        # As dguo98/DiffPruning run_glue_diffpruning.py: the model's own parameters, the diff and the gate
        # logits are clipped apart (three clip_grad_norm_ calls), and the gates' lr stays at alpha_lr (their
        # scheduler2 is built and never stepped).
        for g in groups:
            g["clip_group"] = "model"
        return groups + [
            {
                "params": [g.diff for g in gates(model)],
                "weight_decay": 0.0,  # the L0 penalty regularises w
                "clip_group": "diff",
            },
            {
                "params": [
                    p for g in gates(model) for p in (g.log_alpha, g.group_log_alpha) if p is not None
                ],
                "weight_decay": 0.0,
                "lr": cfg.alpha_lr,
                "clip_group": "gates",
                "schedule": "constant",
            },
        ]

    def loss_term(self, model, cfg, step: int, total_steps: int):
        if cfg.l0_weight == 0 or step >= projection_step(cfg, total_steps):
            return None  # after projection the mask is fixed
        return cfg.l0_weight * sum(g.expected_l0() for g in gates(model))

    def after_step(self, model, cfg, step: int, total_steps: int) -> None:
        if step == projection_step(cfg, total_steps):
            project(model, cfg.sparsity)

    def eval_selectable(self, cfg, step: int, total_steps: int) -> bool:
        return step >= projection_step(cfg, total_steps)  # the model a run keeps is a projected one

    def counts_after_training(self, model, cfg) -> dict:
        nonzero = nonzero_diff(model)
        return {"method": nonzero, "diff_nonzero": nonzero}


def projection_step(cfg: DiffPruneConfig, total_steps: int) -> int:
    return max(1, round(cfg.project_at * total_steps))


@torch.no_grad()
def project(model, sparsity: float) -> int:
    """Keep the ceil(sparsity * D) largest |z * w| entries over all gated tensors, zero the rest, and fix
    the mask: gate logits become +-CLOSED (z exactly 1 or 0, sampled or not) and stop training."""
    gs = gates(model)
    for g in gs:
        g.eval()
    values = [(g.z() * g.diff).abs().flatten() for g in gs]
    flat = torch.cat(values)
    k = max(1, math.ceil(sparsity * flat.numel()))
    threshold = torch.topk(flat, k, sorted=True).values[-1]
    keep_left = k  # ties at the threshold: keep exactly k entries, in tensor order
    for g, v in zip(gs, values, strict=True):
        above = v > threshold
        tie = (v == threshold).nonzero().flatten()
        budget = min(len(tie), max(0, keep_left - int(above.sum())))
        keep = above.clone()
        keep[tie[:budget]] = True
        keep_left -= int(keep.sum())
        keep = keep.view_as(g.diff)
        g.diff.mul_(g.z()).mul_(keep)  # fold the gate value into the kept diff
        g.log_alpha.copy_(torch.where(keep, CLOSED, -CLOSED))
        g.log_alpha.requires_grad_(False)
        if g.group_log_alpha is not None:
            g.group_log_alpha.fill_(CLOSED).requires_grad_(False)
        g.train()
    return k


def nonzero_diff(model) -> int:
    with torch.no_grad():
        return sum(int(((g.gate(g.log_alpha, False) * g.diff) != 0).sum()) for g in gates(model))
