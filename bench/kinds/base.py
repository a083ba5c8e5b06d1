"""What every task kind provides. The training loop, the data readers and the reports call these and
never test a kind's name."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from bench.errors import BenchError
from bench.ragged import Ragged

COLLAPSED_SHARE = 0.95  # "(nearly) all one class": the share of the most common prediction that counts
IGNORE_INDEX = -100  # label of sub-tokens after the first and of special tokens (token tasks)


class TaskKind:
    name: ClassVar[str]
    float_labels: ClassVar[bool] = False  # regression targets are floats
    # the head reads the first token's final state only (a sequence head): bench/needed_tokens.py may then
    # compute the last layer for that token alone; a kind opts in
    head_reads_first_token: ClassVar[bool] = False

    # --- model ---
    def model_class(self):
        from transformers import AutoModelForSequenceClassification  # lazy: `bench tasks` loads the kinds

        return AutoModelForSequenceClassification

    def head_kwargs(self, task) -> dict:
        return {
            "num_labels": task.num_labels,
            "id2label": dict(enumerate(task.labels)),
            "label2id": {lab: i for i, lab in enumerate(task.labels)},
        }

    # --- data ---
    def label_index(self, task, value: str, where: str):
        """A label as written in a local file -> what the model is trained on."""
        if value not in task.labels:
            raise BenchError(
                f"{where}: label {value!r} is not a {task.name} label (choices: {', '.join(task.labels)})"
            )
        return task.labels.index(value)

    def hub_labels(self, column) -> list:
        return list(column)

    def encode(self, task, examples, tokenizer, max_length: int) -> dict:
        """Columns (Ragged): input_ids, special_tokens_mask, token_type_ids when the tokenizer makes them,
        and labels. Unpadded: the collator pads each batch to its own length."""
        columns = list(zip(*examples.texts, strict=True))
        enc = tokenizer(*columns, **tokenizer_options(max_length))
        out = ragged_columns(enc)
        out["labels"] = np.asarray(examples.labels, dtype=np.float32 if self.float_labels else np.int64)
        return out

    # --- evaluation ---
    def predictions(self, logits, lengths, indices) -> list:
        """One prediction per example of the batch, from float logits on the host's side."""
        return logits.argmax(-1).tolist()

    def finish(self, task, predictions: list, data: dict) -> list:
        """Predictions of a whole split, in input order, made comparable with `gold(data)`."""
        return predictions

    def format_prediction(self, task, prediction) -> str:
        """One prediction as the GLUE server reads it: the label's name (0/1 for binary GLUE tasks)."""
        return task.labels[prediction]

    def gold(self, data: dict):
        """The labels a split is scored against."""
        return data["labels"]

    def metrics(self, task, predictions, labels) -> dict[str, float]:
        raise NotImplementedError

    def trivial_predictions(self, task, train_labels, dev_labels) -> list:
        """The trivial baseline's predictions for the dev labels (majority class by default)."""
        majority = int(np.bincount(np.asarray(train_labels)).argmax())
        return [majority] * len(dev_labels)

    def collapse(self, task, predictions) -> str | None:
        """How a split's predictions collapsed onto one answer, or None: here, the share of the most common
        predicted label when it is at least COLLAPSED_SHARE (a run that learned only the class prior)."""
        counts = np.bincount(np.asarray(predictions, dtype=np.int64), minlength=task.num_labels)
        top = int(counts.argmax())
        share = counts[top] / max(1, counts.sum())
        return (
            f"{share:.0%} of dev predictions are {task.labels[top]!r}" if share >= COLLAPSED_SHARE else None
        )


def tokenizer_options(max_length: int) -> dict:
    return dict(
        truncation=True, max_length=max_length, return_special_tokens_mask=True, return_attention_mask=False
    )


def ragged_columns(enc) -> dict:
    """The tokenizer's output columns bench keeps, each as a Ragged."""
    return {
        k: Ragged.from_rows(v)
        for k, v in enc.items()
        if k in ("input_ids", "token_type_ids", "special_tokens_mask")
    }
