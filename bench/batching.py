"""Dynamic padding and length-grouped batches: each batch is padded to its own longest row."""

from __future__ import annotations

import numpy as np
import torch

from bench.encoding import IGNORE_INDEX, Ragged


def length_grouped_batches(
    lengths: list[int], batch_size: int, generator: torch.Generator, mega: int = 50
) -> list[list[int]]:
    """Shuffle, cut into mega-batches of `mega` batches, sort each by length, split into batches,
    shuffle the batches (the scheme of HF's LengthGroupedSampler): little padding, random order."""
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    span = batch_size * mega
    batches = []
    for start in range(0, len(perm), span):
        chunk = sorted(perm[start : start + span], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]


def uniform_batches(n: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """A plain shuffle cut into batches (a DataLoader with shuffle=True, as the reference scripts train)."""
    perm = torch.randperm(n, generator=generator).tolist()
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def buffered_batches(
    n: int, batch_size: int, generator: torch.Generator, buffer: int = 100
) -> list[list[int]]:
    """The file order through a shuffle buffer, cut into batches: google-research/bert's run_classifier.py
    (and adapter-bert's copy) train on `d.repeat().shuffle(buffer_size=100)`: each example leaves a buffer of
    the next `buffer` examples in file order at random, so the order stays close to the file's. Per epoch
    here (TF's stream runs on across epochs; the two differ only around epoch boundaries), and the last
    partial batch is kept (TF drops it)."""
    pending, order = list(range(min(buffer, n))), []
    for following in range(len(pending), n + len(pending)):
        pick = int(torch.randint(len(pending), (1,), generator=generator))
        order.append(pending[pick])
        if following < n:
            pending[pick] = following
        else:
            pending.pop(pick)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def training_batches(order: str, lengths: list[int], batch_size: int, generator: torch.Generator):
    """One epoch's batches: `length` groups similar lengths (less padding), `uniform` shuffles plainly,
    `buffer100` is BERT's TensorFlow shuffle buffer over the file order."""
    if order == "uniform":
        return uniform_batches(len(lengths), batch_size, generator)
    if order == "buffer100":
        return buffered_batches(len(lengths), batch_size, generator)
    return length_grouped_batches(lengths, batch_size, generator)


def sorted_batches(lengths: list[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Evaluation batches by decreasing length, at most `batch_size` rows and, if given, `max_tokens` padded
    tokens each (rows x the batch's longest); predictions are put back in input order."""
    idx = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    if max_tokens is None:
        return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
    batches, start = [], 0
    while start < len(idx):
        rows = max(
            1, min(batch_size, max_tokens // max(lengths[idx[start]], 1))
        )  # the first row is the longest
        batches.append(idx[start : start + rows])
        start += rows
    return batches


def collate(data: dict, indices: list[int], pad_id: int, float_labels: bool = False) -> dict:
    """Pads the rows at `indices` to their longest: each column is one masked fill of a numpy array."""
    lengths = data["input_ids"].lengths[indices]
    mask = np.arange(lengths.max()) < lengths[:, None]  # row-major True cells = the rows, in order

    def padded(col, fill):
        out = np.full(mask.shape, fill, dtype=np.int64)
        out[mask] = col.take(indices)
        return torch.from_numpy(out)

    batch = {
        "input_ids": padded(data["input_ids"], pad_id),
        "attention_mask": torch.from_numpy(mask.astype(np.int64)),
    }
    for key in ("token_type_ids", "special_tokens_mask"):
        if key in data:
            batch[key] = padded(data[key], 0)
    labels = data["labels"]
    if isinstance(labels, Ragged):  # per-token labels
        batch["labels"] = padded(labels, IGNORE_INDEX)
    else:
        batch["labels"] = torch.as_tensor(labels[indices], dtype=torch.float if float_labels else torch.long)
    return batch
