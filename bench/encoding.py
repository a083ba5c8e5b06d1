"""Tokenisation, cached per (tokenizer, task, split content, max length)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path

from bench.data import Examples
from bench.tasks import TAGGING, Task

CACHE_VERSION = 2  # bump when the encoded layout changes
IGNORE_INDEX = -100  # label of sub-tokens after the first and of special tokens (token tasks)


def default_cache_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE", Path.home() / ".cache" / "bench"))


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # Truncation/padding state changes with every call: it is not part of the tokenizer's identity.
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
        body = json.dumps(spec, sort_keys=True)
    else:
        body = repr(sorted(tokenizer.get_vocab().items()))
    extra = f"{type(tokenizer).__name__}|{getattr(tokenizer, 'add_prefix_space', None)}"
    return hashlib.sha1((body + extra).encode()).hexdigest()


def encode(task: Task, examples: Examples, tokenizer, max_length: int) -> dict:
    """Returns columns: input_ids, special_tokens_mask, labels, and token_type_ids when the
    tokenizer makes them (BERT). Unpadded: the collator pads each batch to its own length."""
    common = dict(truncation=True, max_length=max_length, return_special_tokens_mask=True,
                  return_attention_mask=False)
    if task.kind == TAGGING:
        enc = tokenizer(examples.texts, is_split_into_words=True, **common)
        labels = []
        for i, word_tags in enumerate(examples.labels):
            row, prev = [], None
            for w in enc.word_ids(i):
                # The first sub-token of each word carries the word's tag; the rest are ignored.
                row.append(word_tags[w] if w is not None and w != prev else IGNORE_INDEX)
                prev = w
            labels.append(row)
    else:
        columns = list(zip(*examples.texts, strict=True))
        enc = tokenizer(*columns, **common)
        labels = list(examples.labels)
    out = {k: list(v) for k, v in enc.items() if k in ("input_ids", "token_type_ids", "special_tokens_mask")}
    out["labels"] = labels
    return out


def cached_encode(task: Task, split: str, examples: Examples, tokenizer, max_length: int,
                  cache_dir: Path | None = None) -> dict:
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = hashlib.sha1(
        f"{CACHE_VERSION}|{tokenizer_fingerprint(tokenizer)}|{task.name}|{split}|{examples.fingerprint}"
        f"|{max_length}".encode()
    ).hexdigest()
    path = cache_dir / "encoded" / f"{task.name}-{split}-{key[:16]}.pkl"
    if path.is_file():
        with open(path, "rb") as f:
            return pickle.load(f)
    data = encode(task, examples, tokenizer, max_length)
    try:  # write-then-rename: a crash never leaves a half-written cache entry
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs speed
    return data
