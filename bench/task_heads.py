"""The task head as an option: the family's HF head, or one linear layer on the first token's state."""

from __future__ import annotations

from bench.errors import choices_error
from bench.families import of
from bench.tasks import Task

HEADS = ("family", "linear")


def set_head(model, task: Task, head: str) -> list[str]:
    """head=family keeps the family's HF head (BERT: frozen pretrained pooler + linear; RoBERTa, ELECTRA: a
    new
    dense + tanh + linear; DeBERTa: a new pooler + linear; ModernBERT: a new dense + norm + linear).
    head=linear puts one linear layer on the first token's state, as some references do (each family says how:
    bench/families). Returns the names of the parameters it created."""
    if head not in HEADS:
        raise choices_error("head", head, HEADS)
    if head == "family":
        return []
    return of(model).linear_head(model, task)
