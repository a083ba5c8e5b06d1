"""Parameter counts of every method on standard architectures, without downloading weights: the
architectures' configs ship as data (bench/archs) and models are built on the meta device."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.errors import BenchError, choices_error
from bench.models import ALIASES, ARCH_DIR, family, head_kwargs, model_class
from bench.models import arch_config as config
from bench.params import count_parameters, percent
from bench.task_heads import set_head
from bench.tasks import get_task
from methods import AttachContext, get_method
from methods.base import apply_method


def arch_names() -> list[str]:
    return sorted(p.stem for p in ARCH_DIR.glob("*.json") if p.stem != "README")


def arch_config(model: str, task):
    """The architecture's config with the task's head (bench.models.arch_config)."""
    return config(model, **head_kwargs(task))


def meta_counts(
    model: str,
    task,
    method_name: str,
    options: dict | None = None,
    head: str = "family",
    cpu_models: dict | None = None,
) -> dict:
    """A method's counts on an architecture. `cpu_models`: a dict the caller keeps while it counts many
    methods, holding the CPU build that the methods counted on the CPU each get a copy of (its random init,
    torch's CPU generator, about 16 s at BERT-large, is what costs, not the copy)."""
    method = get_method(method_name)
    cfg = method.make_config(options or {})
    config = arch_config(model, task)
    try:
        m, backbone_numel, ctx = attached(config, task, method, cfg, head, "meta")
    except BenchError:
        # A method that reads the weights' values when it attaches (a peft tuner's SVD or sparse mask) cannot
        # on the meta device: count on the CPU instead (random weights; seconds for a large model). A method
        # that cannot attach at all fails here again, with its own message.
        m, backbone_numel, ctx = attached(config, task, method, cfg, head, "cpu", cpu_models)
    stored = {n for n, p in m.named_parameters() if p.requires_grad}
    counts = {**count_parameters(m, backbone_numel, stored), **method.extra_counts(ctx)}
    final = method.final_params(m, cfg)
    if (
        final is not None
    ):  # Diff pruning: %Param is the budget it ends with; trainable keeps the training count
        counts |= {"method_training": counts["method"], "method": final}
    return counts


def attached(config, task, method, cfg, head: str, device: str, cpu_models: dict | None = None):
    with torch.device(device):
        if cpu_models is None or device == "meta":
            m = new_model(config, task, head)
        else:
            key = (config.to_json_string(), task.name, head)
            if key not in cpu_models:
                cpu_models.clear()  # one kept at a time: a large model is 1.3 GB
                cpu_models[key] = new_model(config, task, head)
            m = copy.deepcopy(cpu_models[key])
        ctx = AttachContext(task=task, tokenizer=None, family=family(m), config=m.config)
        m, backbone_numel = apply_method(m, method, cfg, ctx)
    return m, backbone_numel, ctx


def new_model(config, task, head: str):
    m = model_class(task).from_config(config)
    set_head(m, task, head)
    return m


@dataclass(frozen=True)
class Published:
    method: str
    model: str
    figure: str  # as printed in the paper
    task: str  # picks the input layout (single / pair) and head
    options: dict
    config: str  # the configuration that gives the figure
    note: str = ""


# docs/methods.md, "Published %Param targets": each row with the configuration that reproduces it.
PUBLISHED = [
    Published("pasta", "bert-large-cased", "0.015%", "sst2", {}, "M=2 (single sentence), vectors only"),
    Published("pasta", "bert-large-cased", "0.022%", "rte", {}, "M=3 (sentence pair), vectors only"),
    Published(
        "pasta",
        "roberta-large",
        "0.015%",
        "sst2",
        {},
        "M=2 (single sentence)",
        "paper's figure implies a ~335M denominator; RoBERTa-large itself has 354-355M",
    ),
    Published(
        "pasta",
        "roberta-large",
        "0.029%",
        "rte",
        {},
        "M=4 (pair: <s> a </s></s> b </s>)",
        "no configuration gives 0.029% of RoBERTa-large's own size; 98,304 / 335M = 0.029%: the paper's "
        "denominator is ~335M",
    ),
    Published("bitfit", "bert-large-cased", "0.08%", "rte", {}, "all biases + LayerNorm betas + pooler bias"),
    Published("bitfit", "roberta-base", "0.1M", "rte", {}, "all biases + LayerNorm betas (no pooler)"),
    Published("ptuning", "bert-large-cased", "0.29%", "rte", {"prefix_length": 20}, "p=20"),
    Published("lora", "bert-large-cased", "0.24%", "rte", {"r": 8}, "r=8 on W_q, W_v"),
    Published("lora", "roberta-large", "0.8M", "rte", {"r": 8}, "r=8 on W_q, W_v"),
    Published("lora", "roberta-base", "0.3M", "rte", {"r": 8}, "r=8 on W_q, W_v"),
    # peft tuners: the figures their papers give for RoBERTa on GLUE (W_q, W_v of every layer)
    Published("vera", "roberta-base", "0.043M", "rte", {"r": 1024}, "r=1024 on W_q, W_v"),
    Published("vera", "roberta-large", "0.061M", "rte", {"r": 256}, "r=256 on W_q, W_v"),
    Published("fourierft", "roberta-base", "0.024M", "rte", {"n_frequency": 1000}, "n=1000 on W_q, W_v"),
    Published("fourierft", "roberta-large", "0.048M", "rte", {"n_frequency": 1000}, "n=1000 on W_q, W_v"),
    *(
        Published(
            "adapter",
            "bert-large-cased",
            "3.6%",
            "rte",
            {"size": m, "train_layernorm": False},
            f"m={m}, adapters only",
            "the paper's 3.6% averages per-task sizes from {8, 64, 256}: no single m gives it",
        )
        for m in (8, 64, 256)
    ),
]


def method_rows(
    models: list[str], task, methods: list[str], head: str = "family", explicit: bool = False
) -> list[dict]:
    """One row per (model, method). A method that refuses the model's family is a row with the reason
    (`refused`) in the default list, and a one-line error when the user named it (`explicit`)."""
    rows, cpu_models = [], {}
    for model in models:
        if model not in arch_names() and model not in ALIASES and not Path(model).is_dir():
            raise choices_error("model", model, arch_names() + ["minilm", "<local dir>"])
        for name in methods:
            try:
                c = meta_counts(model, task, name, head=head, cpu_models=cpu_models)
            except BenchError as e:
                if explicit or not str(e).startswith(f"{name}: "):
                    raise
                rows.append({"model": model, "name": name, "refused": str(e).removeprefix(f"{name}: ")})
                continue
            rows.append({"model": model, "name": name, **c, "percent": percent(c["method"], c["backbone"])})
    return rows


def published_rows() -> list[dict]:
    rows = []
    for p in PUBLISHED:
        c = meta_counts(p.model, get_task(p.task), p.method, p.options)
        rows.append(
            {
                "name": p.method,
                "model": p.model,
                "published": p.figure,
                "config": p.config,
                "note": p.note,
                **c,
                "percent": percent(c["method"], c["backbone"]),
            }
        )
    return rows
