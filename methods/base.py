"""The uniform adapter interface: every method is one small class behind one registry."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from bench.errors import BenchError, choices_error
from bench.tasks import CLASSIFICATION, REGRESSION, TAGGING, Task


@dataclass(frozen=True)
class AttachContext:
    """What a method may need to know beyond the model: the task and the tokenizer."""

    task: Task
    tokenizer: Any  # None when counting on the meta device without the model's files
    family: str  # bert | roberta

    def special_positions(self) -> int:
        """M: special-token positions in one input of this task's layout, from the tokenizer's own
        template (BERT 2 single / 3 pair, RoBERTa 2 / 4); never from hard-coded ids."""
        pair = self.task.is_pair and self.task.kind != TAGGING
        if self.tokenizer is None:  # architecture-only counting (`bench params`): the families' templates
            return {"bert": (2, 3), "roberta": (2, 4)}[self.family][pair]
        enc = self.tokenizer("a", "b" if pair else None, return_special_tokens_mask=True)
        return int(sum(enc["special_tokens_mask"]))


class Method:
    name: ClassVar[str]
    summary: ClassVar[str]
    config_cls: ClassVar[type]  # a dataclass; its defaults are the paper's
    families: ClassVar[tuple[str, ...]] = ("bert", "roberta")  # () = any
    task_kinds: ClassVar[tuple[str, ...]] = (CLASSIFICATION, REGRESSION, TAGGING)
    knob: ClassVar[str | None] = None  # config field varied for intrinsic-dimension curves
    default_lr: ClassVar[float]
    trains_head: ClassVar[bool] = True
    uses_special_tokens_mask: ClassVar[bool] = False  # PASTA reads it from the batch

    def make_config(self, options: dict | None):
        names = {f.name for f in dataclasses.fields(self.config_cls)}
        for key in options or {}:
            if key not in names:
                raise choices_error(f"option for method {self.name}:", key, names)
        try:
            cfg = self.config_cls(**(options or {}))
        except (TypeError, ValueError) as e:
            raise BenchError(f"bad option for method {self.name}: {e}") from None
        return cfg

    def attach(self, model, cfg, ctx: AttachContext):
        """Add the method's modules to `model` (backbone already frozen) and mark what it trains.
        Returns the model (peft may wrap it)."""
        raise NotImplementedError

    def check_supported(self, ctx: AttachContext) -> None:
        if self.families and ctx.family not in self.families:
            raise choices_error(f"model family for method {self.name}:", ctx.family, self.families)
        if ctx.task.kind not in self.task_kinds:
            raise choices_error(f"task kind for method {self.name}:", ctx.task.kind, self.task_kinds)

    knob_values: ClassVar[tuple] = ()  # candidate knob values, smallest first

    def knob_points(self, model_config, n: int) -> list[dict]:
        """n method-option sets spread log-evenly over knob_values: the points of a curve."""
        values = list(self.knob_values)
        if not self.knob or not values:
            return [{}]
        if n >= len(values):
            return [{self.knob: v} for v in values]
        import numpy as np

        if all(isinstance(v, (int, float)) for v in values):  # nearest candidate to log-even targets
            logs = np.log(values)
            idx = sorted({int(np.abs(logs - t).argmin()) for t in np.linspace(logs[0], logs[-1], n)})
        else:  # ordered names (BitFit subsets): evenly by position
            idx = sorted({int(round(x)) for x in np.linspace(0, len(values) - 1, n)})
        return [{self.knob: values[i]} for i in idx]

    def defaults(self) -> dict:
        return dataclasses.asdict(self.config_cls())


def encoder_layers(model):
    """The list of transformer blocks of a BERT/RoBERTa encoder."""
    return model.base_model.encoder.layer
