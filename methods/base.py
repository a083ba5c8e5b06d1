"""The uniform adapter interface: every method is one small class behind one registry.

A method declares what it is (name, config dataclass with the paper's defaults, families and task
kinds it supports, its size knob, default lr, the batch columns it reads, its role in curves, tables
and benchmarks) and how it works: `attach` adds its modules and marks what trains; the optional hooks
shape the optimisation (parameter groups, an extra loss term, a step hook). Code elsewhere asks the
method; it never tests a method's name."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bench.errors import BenchError, choices_error
from bench.families import Family, families
from bench.models import backbone, head_prefixes
from bench.tasks import KINDS, Task
from bench.values import typed


@dataclass(frozen=True)
class AttachContext:
    """What a method may need to know beyond the model: the task, the tokenizer, the model's family and
    config."""

    task: Task
    tokenizer: Any  # None when counting on the meta device without the model's files
    family: Family | None  # None: an architecture bench has no family module for (generic methods still run)
    config: Any = None  # the model's transformers config

    def special_positions(self) -> int:
        """M: special-token positions in one input of this task's layout, from the tokenizer's own
        template (BERT 2 single / 3 pair, RoBERTa 2 / 4); never from hard-coded ids."""
        pair = self.task.is_pair
        if self.tokenizer is None:  # architecture-only counting (`bench params`): the family's template
            return self.family.special_positions[pair]
        enc = self.tokenizer("a", "b" if pair else None, return_special_tokens_mask=True)
        return int(sum(enc["special_tokens_mask"]))


class Method:
    name: ClassVar[str] = "base"
    display_name: ClassVar[str] = ""  # in tables and figures (e.g. "P-tuning v2"); default: the name
    summary: ClassVar[str] = ""
    config_cls: ClassVar[type]  # a dataclass; its defaults are the paper's
    # False: the method works on any architecture transformers loads (full FT, head, SAID/DID, Diff pruning);
    # True: it asks the model's family (bench/families) where things are, and refuses a model without one.
    needs_family: ClassVar[bool] = True
    task_kinds: ClassVar[tuple[str, ...]] = KINDS
    default_lr: ClassVar[float] = 1e-3
    trains_head: ClassVar[bool] = True
    batch_columns: ClassVar[
        tuple[str, ...]
    ] = ()  # optional batch columns the method reads (PASTA: special_tokens_mask)
    # The size knob: the config field varied for intrinsic-dimension curves, its label in tables and
    # plots, and its candidate values, smallest first.
    knob: ClassVar[str | None] = None
    knob_label: ClassVar[str] = ""
    knob_values: ClassVar[tuple] = ()
    # Roles: `reference` is full fine-tuning (first table row, the 90% target of d90, the denominator of
    # benchmark ratios, all weights trained); an `anchor` is always added to intrinsic curves (full FT,
    # head only); `in_default_lists` puts the method in the default lists of `bench intrinsic` (when it has
    # a knob) and `bench perf`.
    reference: ClassVar[bool] = False
    # False when training changes every pretrained weight (full FT, SAID/DID's projected update, Diff
    # pruning's diff): such a method computes weight gradients (6N FLOPs per token, not 4N) and is not held
    # to the frozen-backbone speed and memory targets of `bench perf`.
    frozen_backbone: ClassVar[bool] = True
    anchor: ClassVar[bool] = False
    # True for the methods built from methods/tuners/tuners.yaml (peft's tuners): listed apart by
    # `bench methods` and measured against peft's get_peft_model by `bench perf`.
    peft_tuner: ClassVar[bool] = False
    # True: the buffers `attach` creates are stored with the adapter (a peft tuner's random projections,
    # masks or SVD factors), so a reload does not depend on drawing them again the same way.
    stores_buffers: ClassVar[bool] = False
    in_default_lists: ClassVar[bool] = True

    # --- configuration ---
    def make_config(self, options: dict | None):
        fields = {f.name: f for f in dataclasses.fields(self.config_cls)}
        if options is not None and not isinstance(options, dict):
            raise BenchError(f"method options must be a mapping, got {options!r}")
        given = {}
        for key, value in (options or {}).items():
            if key not in fields:
                raise choices_error(f"option for method {self.name}:", key, fields)
            given[key] = typed(key, value, str(fields[key].type), f"for method {self.name}")
        try:
            cfg = self.config_cls(**given)
        except (TypeError, ValueError) as e:
            raise BenchError(f"bad option for method {self.name}: {e}") from None
        return cfg

    def probe_options(self) -> dict:
        """Options for the 2-layer, 32-wide models of the capability matrix (sizes that fit them)."""
        return {}

    def defaults(self) -> dict:
        return dataclasses.asdict(self.config_cls())

    def check_supported(self, ctx: AttachContext, cfg=None) -> None:
        """Refuse, in one line and before anything is built or created, a model, task or option set the
        method cannot train as it claims (rather than train nothing, or the wrong parameters)."""
        if ctx.task.kind not in self.task_kinds:
            raise choices_error(f"task kind for method {self.name}:", ctx.task.kind, self.task_kinds)
        if self.needs_family and ctx.family is None:
            raise BenchError(
                f"{self.name}: model type {getattr(ctx.config, 'model_type', '?')!r} has no family "
                f"module in bench/families (choices: {', '.join(families())})"
            )
        reason = self.unsupported(ctx, cfg if cfg is not None else self.config_cls())
        if reason:
            raise BenchError(f"{self.name}: {reason}")

    def unsupported(self, ctx: AttachContext, cfg) -> str | None:
        """Why this method cannot apply to ctx's model family and task with these options, or None."""
        return None

    # --- attaching ---
    def attach(self, model, cfg, ctx: AttachContext):
        """Add the method's modules to `model` (backbone already frozen) and mark what it trains.
        Returns the model (peft may wrap it)."""
        raise NotImplementedError

    def extra_positions(self, cfg) -> int:
        """Positions the method adds to every input (prompt tuning's virtual tokens): max_length plus these
        must fit the model's position table."""
        return 0

    def extra_counts(self, ctx: AttachContext) -> dict:
        """Numbers beside the parameter counts that explain them (PASTA: M special positions)."""
        return {}

    def expected_params(
        self, model_config, task: Task, family: Family, cfg, special_positions: int
    ) -> int | None:
        """The method's own parameter count in closed form (docs/methods.md), head excluded; None when the
        method has no formula (full FT: the whole backbone). Tests check it against the attached model."""
        return None

    # --- optimisation hooks (the training loop calls these; defaults change nothing) ---
    def no_decay(self, name: str, param) -> bool:
        """Parameters AdamW must not decay: biases, LayerNorm parameters and 1-D vectors."""
        return param.ndim < 2 or "LayerNorm" in name

    def param_groups(self, model, cfg, weight_decay: float) -> list[dict]:
        """Optimizer parameter groups; a group may carry its own lr or weight_decay, `schedule: constant`
        (its lr
        never decays) and a `clip_group` name (groups of one name are clipped together, each name apart)."""
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if p.requires_grad:
                (no_decay if self.no_decay(name, p) else decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def loss_term(self, model, cfg, step: int, total_steps: int):
        """An extra term added to the task loss at each training step (a tensor), or None."""
        return None

    def after_step(self, model, cfg, step: int, total_steps: int) -> None:
        """Called after optimizer step `step` (1-based) of `total_steps`, before the gradients are cleared."""

    def eval_selectable(self, cfg, step: int, total_steps: int) -> bool:
        """Whether an evaluation after `step` may become the best one (Diff pruning: only once projected)."""
        return True

    def final_params(self, model, cfg) -> int | None:
        """The method's own parameter count once trained, when it differs from what trains (Diff pruning: the
        diff entries its sparsity budget keeps); what %Param reports. None: the trained count."""
        return None

    def counts_after_training(self, model, cfg) -> dict:
        """Counts that only exist once trained (Diff pruning: the nonzero diff entries); they replace the
        counts logged at the start under the same names."""
        return {}

    def search_space(self) -> dict:
        """A sweep's space when sweeps/spaces/<name>.yaml does not exist ({} = none): the same mapping a space
        file holds."""
        return {}

    # --- curves ---
    def knob_points(self, model_config, n: int) -> list[dict]:
        """n method-option sets spread log-evenly over knob_values: the points of a curve."""
        values = list(self.knob_values)
        if not self.knob or not values:
            return [{}]
        if n >= len(values):
            return [{self.knob: v} for v in values]

        if all(isinstance(v, (int, float)) for v in values):  # nearest candidate to log-even targets
            logs = np.log(values)
            idx = sorted({int(np.abs(logs - t).argmin()) for t in np.linspace(logs[0], logs[-1], n)})
        else:  # ordered names (BitFit subsets): evenly by position
            idx = sorted({int(round(x)) for x in np.linspace(0, len(values) - 1, n)})
        return [{self.knob: values[i]} for i in idx]

    def knob_value_label(self, options: dict) -> str:
        """How a curve point is named in MLflow tags and tables."""
        return str(options.get(self.knob, "-")) if self.knob else "-"


def check_range(name: str, value, low: float, high: float, high_open: bool = True) -> None:
    """For method configs' __post_init__: `value` (if given) within [low, high) or [low, high]."""
    if value is not None and not (low <= value < high if high_open else low <= value <= high):
        raise ValueError(f"{name} {value} must be in [{low}, {high}{')' if high_open else ']'}")


def apply_method(model, method: Method, cfg, ctx: AttachContext):
    """Freeze the backbone, attach the method, unfreeze the task head if the method trains it: the one
    place a model becomes a method's model (runs, evaluation and parameter tables alike).
    Returns (model, parameters of the pretrained encoder before attaching)."""
    method.check_supported(ctx, cfg)
    backbone_numel = sum(p.numel() for p in backbone(model).parameters())
    model.bench_head_prefixes = head_prefixes(model)  # before the method hangs its own modules on the model
    model.requires_grad_(False)
    model = method.attach(model, cfg, ctx)
    if method.trains_head:
        for name, p in model.named_parameters():
            if name.startswith(model.bench_head_prefixes):
                p.requires_grad_(True)
    return model, backbone_numel
