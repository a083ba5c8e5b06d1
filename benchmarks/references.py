"""Each method's natural reference for `bench perf`: how a researcher would train it without bench, through
`transformers.Trainer`. LoRA, peft's other tuners and prefix tuning as peft users write them (get_peft_model,
with the tuner's own config and the family's whole head in modules_to_save), BitFit as a
requires_grad mask over the biases, everything else with bench's own modules attached. A method whose
training needs hooks the Trainer lacks (an extra loss term, a step hook, its own parameter groups: Diff
pruning) has no reference: the Trainer would train something else."""

from __future__ import annotations

import dataclasses

from peft import LoraConfig, PrefixTuningConfig, TaskType, get_peft_model
from transformers import AutoModel

from bench.build import build_model
from bench.compat import peft_prefix_tuning_problem
from bench.models import family, head_prefixes, model_class, model_config
from bench.tasks import TAGGING, get_task
from methods import get_method
from methods.base import Method
from methods.lora import target_pattern

LABELS = {
    "ours": "Trainer + bench's modules",
    "peft": "Trainer + peft get_peft_model",
    "masks": "Trainer + requires_grad on biases",
    "peft-prefix": "Trainer + peft prefix tuning",
}
# Where the natural reference is not bench's modules under the Trainer. P-tuning v2 has both: our module
# under the Trainer, and peft's prefix tuning (the same deep prompts, peft's implementation).
NATURAL = {"lora": ("peft",), "bitfit": ("masks",), "ptuning": ("ours", "peft-prefix")}
HOOKS = ("param_groups", "loss_term", "after_step", "eval_selectable")


def references(method_name: str, cfg=None) -> tuple[str, ...]:
    """The method's natural references; given a run configuration, only those that can run on its model with
    the installed libraries (`why_not`)."""
    method = type(get_method(method_name))
    if any(getattr(method, hook) is not getattr(Method, hook) for hook in HOOKS):
        return ()
    tuner = method.peft_tuner  # a peft tuner: peft's get_peft_model, as its users write it
    natural = NATURAL.get(method_name, ("peft",) if tuner else ("ours",))
    return natural if cfg is None else tuple(r for r in natural if why_not(r, cfg) is None)


def why_not(ref: str, cfg) -> str | None:
    """Why reference `ref` cannot run on cfg's model with the installed libraries, or None."""
    if ref != "peft-prefix":
        return None

    config = model_config(cfg.model, cfg.init)
    task_cls = model_class(get_task(cfg.task))._model_mapping[type(config)]
    return peft_prefix_tuning_problem(task_cls, AutoModel._model_mapping[type(config)])


def skipped(method_names: list[str], cfg) -> list[str]:
    """One line per natural reference that cannot run here, saying why."""
    return [
        f"{name}: {LABELS[ref]} skipped: {reason}"
        for name in method_names
        for ref in references(name)
        if (reason := why_not(ref, cfg))
    ]


def reference_model(ref: str, cfg, task):
    """The model the reference trains (a runner.Built): bench's build for "ours", else the plain pretrained
    model (bench's head) with peft or a requires_grad mask applied as a user would; either way on
    transformers' model code as shipped (no Family.lean_code)."""
    if ref == "ours":
        return build_model(cfg, task, lean=False)
    plain = build_model(cfg.replace(method="full", method_options={}), task, lean=False)
    model, options = plain.model, get_method(cfg.method).make_config(cfg.method_options)
    if ref == "masks":
        head = head_prefixes(model)
        for name, p in model.named_parameters():  # BitFit: every bias (LayerNorm betas included) + the head
            p.requires_grad_(name.endswith(".bias") or name.startswith(head))
        return plain

    task_type = TaskType.TOKEN_CLS if task.kind == TAGGING else TaskType.SEQ_CLS
    method = get_method(cfg.method)
    if ref == "peft" and method.peft_tuner:
        config = dataclasses.replace(
            method.peft_config_for(model, options, family(model)),
            task_type=task_type,
            modules_to_save=[p.rstrip(".") for p in head_prefixes(model)],
        )
    elif ref == "peft":
        config = LoraConfig(
            task_type=task_type,
            r=options.r,
            lora_alpha=options.alpha,
            lora_dropout=options.dropout,
            bias="none",
            target_modules=target_pattern(options, family(model)),
            # the family's whole head trains (peft's default saves only classifier/score)
            modules_to_save=[p.rstrip(".") for p in head_prefixes(model)],
        )
    elif ref == "peft-prefix":
        config = PrefixTuningConfig(
            task_type=task_type, num_virtual_tokens=options.prefix_length, prefix_projection=False
        )
    else:
        raise ValueError(f"unknown reference {ref!r} (choices: {', '.join(LABELS)})")
    return dataclasses.replace(plain, model=get_peft_model(model, config))
