"""The task head as an option: the family's HF head, or one linear layer on the first token's state."""

from __future__ import annotations

from torch import nn

from bench.errors import BenchError, choices_error
from bench.tasks import Task

HEADS = ("family", "linear")


class FirstToken(nn.Module):
    """Stands in for BERT's pooler: the first token's final hidden state, unchanged."""

    def forward(self, hidden_states):
        return hidden_states[:, 0]


class LinearOnFirstToken(nn.Module):
    """One linear layer on the first token's final hidden state (after the model's hidden dropout)."""

    def __init__(self, hidden: int, labels: int, dropout: float, std: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, labels)
        nn.init.normal_(self.linear.weight, std=std)  # as HF initialises a new linear layer
        nn.init.zeros_(self.linear.bias)

    def forward(self, features, **kwargs):
        return self.linear(self.dropout(features[:, 0]))


def set_head(model, task: Task, head: str) -> list[str]:
    """head=family keeps the family's HF head (BERT: frozen pretrained pooler + linear; RoBERTa: a new dense +
    tanh + linear). head=linear puts one linear layer on the first token's state, as some references do.
    Token tagging already has one linear layer per token: both choices are the same. Returns the names of
    the parameters it created."""
    if head not in HEADS:
        raise choices_error("head", head, HEADS)
    if head == "family" or task.layout == "words":
        return []
    conf = model.config
    base = model.base_model
    if getattr(base, "pooler", None) is not None:  # BERT-like: drop the pooler, keep the linear classifier
        base.pooler = FirstToken()
        return []
    if hasattr(model.classifier, "out_proj"):  # RoBERTa-like classification head
        model.classifier = LinearOnFirstToken(conf.hidden_size, task.num_labels, conf.hidden_dropout_prob,
                                              conf.initializer_range)
        return [n for n, _ in model.named_parameters() if n.startswith("classifier.")]
    raise BenchError(f"head=linear is not supported for model type {conf.model_type!r} (choices: bert, roberta)")
