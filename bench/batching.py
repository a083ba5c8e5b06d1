"""Dynamic padding and length-grouped batches: each batch is padded to its own longest row."""

from __future__ import annotations

import torch

from bench.encoding import IGNORE_INDEX


def length_grouped_batches(lengths: list[int], batch_size: int, generator: torch.Generator,
                           mega: int = 50) -> list[list[int]]:
    """Shuffle, cut into mega-batches of `mega` batches, sort each by length, split into batches,
    shuffle the batches (the scheme of HF's LengthGroupedSampler): little padding, random order."""
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    span = batch_size * mega
    batches = []
    for start in range(0, len(perm), span):
        chunk = sorted(perm[start:start + span], key=lambda i: -lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]


def sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Evaluation batches by decreasing length; predictions are put back in input order."""
    idx = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]


def collate(data: dict, indices: list[int], pad_id: int, float_labels: bool = False) -> dict:
    rows = [data["input_ids"][i] for i in indices]
    width = max(map(len, rows))
    n = len(rows)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    batch = {"input_ids": input_ids, "attention_mask": attention}
    for key in ("token_type_ids", "special_tokens_mask"):
        if key in data:
            batch[key] = torch.zeros((n, width), dtype=torch.long)
    token_labels = isinstance(data["labels"][0], list)
    if token_labels:
        batch["labels"] = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
    for r, i in enumerate(indices):
        length = len(data["input_ids"][i])
        input_ids[r, :length] = torch.tensor(data["input_ids"][i])
        attention[r, :length] = 1
        for key in ("token_type_ids", "special_tokens_mask"):
            if key in data:
                batch[key][r, :length] = torch.tensor(data[key][i])
        if token_labels:
            batch["labels"][r, :length] = torch.tensor(data["labels"][i])
    if not token_labels:
        dtype = torch.float if float_labels else torch.long
        batch["labels"] = torch.tensor([data["labels"][i] for i in indices], dtype=dtype)
    return batch
