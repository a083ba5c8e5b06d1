"""Rows of different lengths (token ids, per-token labels) as one flat array and row offsets."""

from __future__ import annotations

import itertools

import numpy as np


class Ragged:
    """Rows of different lengths stored flat: one int32 array and row offsets. A split then loads
    from the cache as a few array copies and batches are cut by slicing (nested Python lists, the
    first cache format, unpickled as slowly as the tokenizer ran)."""

    __slots__ = ("flat", "offsets")

    def __init__(self, flat: np.ndarray, offsets: np.ndarray):
        self.flat, self.offsets = flat, offsets

    @classmethod
    def from_rows(cls, rows) -> Ragged:
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=offsets[1:])
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int32, count=int(offsets[-1]))
        return cls(flat, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.flat[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, Ragged)
            and np.array_equal(self.flat, other.flat)
            and np.array_equal(self.offsets, other.offsets)
        )

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, indices) -> np.ndarray:
        """The rows at `indices`, concatenated."""
        return np.concatenate([self[i] for i in indices])

    def tolist(self) -> list[list[int]]:
        return [row.tolist() for row in self]
