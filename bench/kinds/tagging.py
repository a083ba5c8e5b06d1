"""Token tagging (CoNLL-2003 NER): the first sub-token of each word carries the word's tag; entity-level
micro precision/recall/F1 and per-type F1 from seqeval, scored on every word of the sentence: words cut off
by max_length count as predicted O (so truncation costs recall instead of vanishing from the gold)."""

from __future__ import annotations

from bench.kinds import register
from bench.kinds.base import IGNORE_INDEX, TaskKind, ragged_columns, tokenizer_options
from bench.ragged import Ragged


@register
class Tagging(TaskKind):
    name = "tagging"

    def model_class(self):
        from transformers import AutoModelForTokenClassification  # lazy: `bench tasks` loads the kinds

        return AutoModelForTokenClassification

    def encode(self, task, examples, tokenizer, max_length: int) -> dict:
        enc = tokenizer(examples.texts, is_split_into_words=True, **tokenizer_options(max_length))
        rows, words = [], []
        for i, word_tags in enumerate(examples.labels):
            row, index, prev = [], [], None
            for w in enc.word_ids(i):
                first = w is not None and w != prev
                row.append(word_tags[w] if first else IGNORE_INDEX)
                index.append(w if first else -1)
                prev = w
            rows.append(row)
            words.append(index)
        out = ragged_columns(enc)
        out["labels"] = Ragged.from_rows(rows)  # per token, for training
        # per token, the word it starts (-1 elsewhere): predictions go back to their own word even when a word
        # produced no sub-token at all (U+200B, a soft hyphen), which would otherwise shift every later word
        out["word_index"] = Ragged.from_rows(words)
        out["word_labels"] = Ragged.from_rows(examples.labels)  # per word, every word: what is scored
        return out

    def predictions(self, logits, lengths, indices) -> list:
        return [row[: lengths[i]] for row, i in zip(logits.argmax(-1).tolist(), indices, strict=True)]

    def finish(self, task, predictions: list, data: dict) -> list:
        """Token predictions -> one tag per word: its first sub-token's; O for a word the truncation cut off
        or that produced no sub-token."""
        if "word_labels" not in data:
            return predictions
        outside = task.labels.index("O") if "O" in task.labels else 0
        out = []
        for pred_row, index_row, n_words in zip(
            predictions, data["word_index"], data["word_labels"].lengths.tolist(), strict=True
        ):
            tags = [outside] * n_words
            for p, w in zip(pred_row, index_row, strict=False):
                if w >= 0:
                    tags[w] = p
            out.append(tags)
        return out

    def gold(self, data: dict):
        return data.get("word_labels", data["labels"])

    def metrics(self, task, predictions, labels) -> dict[str, float]:
        from seqeval.metrics import (  # lazy: `bench tasks` loads the kinds
            accuracy_score,
            classification_report,
        )

        y_true, y_pred = [], []
        for pred_row, label_row in zip(predictions, labels, strict=True):
            keep = [(p, t) for p, t in zip(pred_row, label_row, strict=False) if t != IGNORE_INDEX]
            y_true.append([task.labels[t] for _, t in keep])
            y_pred.append([task.labels[p] for p, _ in keep])
        # Default (conlleval-compatible) mode: an I-X after O opens an entity, as in the CoNLL scorer.
        report = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
        micro = report["micro avg"]
        out = {
            "precision": micro["precision"],
            "recall": micro["recall"],
            "f1": micro["f1-score"],
            "accuracy": accuracy_score(y_true, y_pred),
        }
        for etype in sorted({lab[2:] for lab in task.labels if lab != "O"}):
            out[f"f1_{etype}"] = report.get(etype, {}).get("f1-score", 0.0)
        return {k: float(v) for k, v in out.items()}

    def collapse(self, task, predictions) -> str | None:
        """Not judged from the tags (most tokens are O in a good tagger too): a tagger that predicts O alone
        scores entity F1 0 and is caught as no better than the trivial baseline."""
        return None

    def trivial_predictions(self, task, train_labels, dev_labels) -> list:
        return [[task.labels.index("O") if "O" in task.labels else 0] * len(r) for r in dev_labels]
