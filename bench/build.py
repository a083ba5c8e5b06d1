"""From a RunConfig to what a run trains on: the model with its method attached, and the encoded data."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from bench.config import RunConfig
from bench.data import load_examples
from bench.encoding import cached_encode, split_rows
from bench.errors import BenchError
from bench.families import find
from bench.lean import use_lean_dropout
from bench.models import family, load_model, load_tokenizer, model_config
from bench.needed_tokens import use_needed_tokens
from bench.record import HOLDOUT
from bench.train import Prepared
from bench.warm_start import warm_start
from methods import AttachContext, get_method
from methods.base import apply_method


@dataclass
class Built:
    """A model with its method attached, and everything needed to train or evaluate it."""

    model: object
    tokenizer: object
    method: object
    method_config: object
    stored_names: set
    backbone_numel: int
    init_tags: dict = dataclasses.field(
        default_factory=dict
    )  # init_from: where the weights started (the chain)


def plain_name(name: str) -> str:
    """A parameter's name before a method wrapped its module: torch.nn.utils.parametrize
    (`w` -> `parametrizations.w.original`) or peft (`query.weight` -> `query.base_layer.weight`)."""
    return name.replace(".parametrizations.", ".").removesuffix(".original").replace(".base_layer.", ".")


def check_applies(cfg: RunConfig, task) -> None:
    """Refuse, in one line and from the model's config alone (no weights loaded), a max_length the model
    cannot take or a method that cannot apply to this family, task or option set."""
    method = get_method(cfg.method)
    method_cfg = method.make_config(cfg.method_options)
    conf = model_config(cfg.model, cfg.init)
    fam = find(conf.model_type)
    check_max_length(cfg, conf, fam, method.extra_positions(method_cfg))
    method.check_supported(AttachContext(task=task, tokenizer=None, family=fam, config=conf), method_cfg)


def build_model(cfg: RunConfig, task, lean: bool = True) -> Built:
    """Pretrained model + head, backbone frozen, method attached, head trainable. lean=False: transformers'
    model code as shipped, without the family's memory-lean replacements and bench's bool-mask dropout (what
    `bench perf`'s references train)."""
    check_applies(cfg, task)
    method = get_method(cfg.method)
    method_cfg = method.make_config(cfg.method_options)
    tokenizer = load_tokenizer(cfg.model, task, cfg.init)
    torch.manual_seed(
        cfg.seed
    )  # head and method initialisation follow the seed (and a random init's weights)
    model, new_names = load_model(cfg.model, task, cfg.head, cfg.init, tokenizer, lean=lean)
    fam = family(model)
    ctx = AttachContext(task=task, tokenizer=tokenizer, family=fam, config=model.config)
    # the modules the attention function receives, found before a method wraps the model
    attention = [fam.attention_module(layer) for layer in fam.layers(model)] if fam else []
    attention = [m for m in attention if m is not None]  # DeBERTa: its own attention code
    if lean and fam and fam.computes_needed_tokens:
        layers = fam.layers(model)
        skip = cfg.padding_tokens == "skip"
        first = cfg.last_layer_tokens == "head" and task.task_kind.head_reads_first_token
        for i, layer in enumerate(layers):
            short = first and i == len(layers) - 1
            if skip or short:  # other layers keep transformers' forward untouched
                use_needed_tokens(layer, skip, short)
    buffers_before = {n for n, _ in model.named_buffers()}
    model, backbone_numel = apply_method(model, method, method_cfg, ctx)
    if lean:
        use_lean_dropout(model, cfg.dropout_draws, attention)  # the methods' dropouts too
    init_tags = {}
    if cfg.init_from:  # a finished run's weights (its head replaced), e.g. the MNLI warm start
        init_tags = warm_start(model, cfg, model.bench_head_prefixes)
    # Stored with the adapter: what trains, plus anything newly initialised (so reload is exact), also
    # when a method reparameterised it (torch's parametrize renames `w` to `parametrizations.w.original`).
    stored = {
        n
        for n, p in model.named_parameters()
        if p.requires_grad or n in new_names or plain_name(n) in new_names
    }
    if method.stores_buffers:  # the method's own state (peft tuners' random projections, masks, SVD factors)
        stored |= {n for n, _ in model.named_buffers() if plain_name(n) not in buffers_before}
    return Built(model, tokenizer, method, method_cfg, stored, backbone_numel, init_tags)


def check_max_length(cfg: RunConfig, conf, fam, extra: int = 0) -> None:
    """max_length (plus the `extra` positions a method prepends) within the positions the model (config
    `conf`, family `fam` or None) has: its family says how many (RoBERTa's start after its padding index,
    DeBERTa-v3's relative positions have no table)."""
    limit = fam.max_length(conf) if fam else getattr(conf, "max_position_embeddings", None)
    if limit is None:
        return
    if cfg.max_length + extra > limit:
        added = f" + {extra} positions of method {cfg.method}" if extra else ""
        raise BenchError(
            f"option max_length={cfg.max_length}{added} exceeds the {limit} positions of model {cfg.model}"
        )


def load_data(cfg: RunConfig, task, tokenizer, splits, sources: dict | None = None):
    """Encoded splits; `sources` (if given) receives split -> (where it was read, content digest, rows)."""
    out = {}
    for split in splits:
        ex = load_examples(task, split, cfg.data_dir)
        if split == "train" and cfg.max_train_samples:
            ex.texts, ex.labels = ex.texts[: cfg.max_train_samples], ex.labels[: cfg.max_train_samples]
            ex.fingerprint += f"|first{cfg.max_train_samples}"
        if sources is not None:
            sources[split] = (ex.source, ex.fingerprint, len(ex.labels))
        out[split] = cached_encode(task, split, ex, tokenizer, cfg.max_length, cfg.cache_dir)
    return out


def prepare_data(cfg: RunConfig, task, built: Built, train: bool = True):
    """Tokenised train (optional) and dev splits, ready for the training loop."""
    splits = (["train"] if train else []) + list(task.dev_splits) + list(task.test_splits)
    sources: dict = {}
    data = load_data(cfg, task, built.tokenizer, splits, sources)
    dev = {s: data[s] for s in task.dev_splits}
    if train and cfg.select_on == "holdout":
        # A fixed draw (seed 0, whatever the run's seed): every seed and method selects on the same examples,
        # and dev stays untouched for reporting. The holdout is the first "dev" split: it picks the best
        # epoch.

        n = len(data["train"]["labels"])
        k = int(np.ceil(cfg.holdout_fraction * n))
        if not 1 <= k < n:
            raise BenchError(
                f"holdout_fraction={cfg.holdout_fraction} leaves no holdout or no training data "
                f"from {n} training examples"
            )
        order = np.random.default_rng(0).permutation(n)
        data["train"], held = (
            split_rows(data["train"], np.sort(order[k:])),
            split_rows(data["train"], np.sort(order[:k])),
        )
        dev = {HOLDOUT: held, **dev}
    return Prepared(
        task,
        data.get("train", {}),
        dev,
        built.tokenizer.pad_token_id,
        extra_columns=built.method.batch_columns,
        test={s: data[s] for s in task.test_splits},
        sources=sources,
    )
