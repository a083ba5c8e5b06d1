"""What bench must know about one encoder architecture, in one place: where its layers, projections,
norms, adapter sites and attention module are, what its task head is, how many special positions its
inputs carry, how long they may be, and what it cannot do. Methods, heads, counting and analyses ask the
family; no other module names an architecture."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from bench.lean import use_lean_attention

# Projection roles (what methods ask for) -> module path inside one layer, for the BERT layout that most
# encoders copied.
BERT_PROJECTIONS = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attention_output": "attention.output.dense",
    "intermediate": "intermediate.dense",
    "output": "output.dense",
}
BERT_NORMS = {"attention_norm": "attention.output.LayerNorm", "output_norm": "output.LayerNorm"}


class Family:
    name: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]  # transformers' config.model_type values this family covers
    # bench alias -> hub id; each alias's architecture ships in bench/archs/<alias>.json
    aliases: ClassVar[dict[str, str]] = {}
    # special tokens in (single, pair) inputs: [CLS] a [SEP] / [CLS] a [SEP] b [SEP]
    special_positions: ClassVar[tuple[int, int]] = (2, 3)
    layers_path: ClassVar[str] = "encoder.layer"  # the block list, under the base model
    projections: ClassVar[dict[str, str]] = BERT_PROJECTIONS
    fused: ClassVar[dict[str, str]] = {}  # role -> the projection role that computes it fused with others
    norms: ClassVar[dict[str, str]] = BERT_NORMS  # norm roles -> path inside one layer
    # Where a Houlsby adapter goes: the module whose output the adapter transforms, inside one layer; each
    # sits after a sub-layer's output projection (and its dropout), before the residual add.
    adapter_sites: ClassVar[tuple[str, ...]] = ("attention.output.dropout", "output.dropout")
    attention_implementation: ClassVar[str] = "sdpa"  # asked of transformers (DeBERTa has only eager)
    # the module transformers' attention interface receives (P-tuning v2's prefix, head masking)
    attention_path: ClassVar[str | None] = "attention.self"
    attention_note: ClassVar[str] = ""  # why a prefix cannot be read, when attention_path is None
    absolute_positions: ClassVar[bool] = True  # learned absolute positions (P-tuning v2's position_shift)
    pooler_in_backbone: ClassVar[bool] = False  # a pretrained pooler in the encoder (sequence head)
    # its layers are transformers' BertLayer code: they may compute only the tokens needed (the real ones; the
    # first in the last layer under a sequence head: bench/needed_tokens.py)
    computes_needed_tokens: ClassVar[bool] = False
    prefix_space_for_words: ClassVar[bool] = False  # byte-level BPE: pre-split words (NER) need a space
    # What a tiny test model of this family needs beyond width and depth, and its tokenizer's kind:
    # wordpiece ([CLS] a [SEP] b [SEP]), bpe-pair-sep (<s> a </s></s> b </s>), bpe-cls (BPE with [CLS]/[SEP]).
    tiny_config: ClassVar[dict] = {}
    tiny_tokenizer: ClassVar[str] = "wordpiece"

    # --- where things are ---
    def layers(self, model) -> nn.ModuleList:
        return model.base_model.get_submodule(self.layers_path)

    def projection(self, role: str) -> str | None:
        """The module path (inside a layer) computing a projection role; fused roles give the fused module."""
        return self.projections.get(self.fused.get(role, role))

    def projection_shape(self, role: str, config) -> tuple[int, int]:
        """(in, out) features of a projection role's module (closed form, for LoRA-style counts)."""
        H, I = config.hidden_size, config.intermediate_size  # noqa: E741
        return {"intermediate": (H, I), "output": (I, H)}.get(self.fused.get(role, role), (H, H))

    def attention_module(self, layer) -> nn.Module | None:
        return None if self.attention_path is None else layer.get_submodule(self.attention_path)

    # --- what it has ---
    def has_biases(self, config) -> bool:
        """Whether the encoder has bias terms at all (BitFit trains nothing without them)."""
        return True

    def no_bias_reason(self, config) -> str:
        return f"{self.name} has no bias terms in its encoder"

    def bias_params(self, config) -> int:
        """Bias terms of the encoder without a pooler (closed form; BitFit's "all"): per layer q, k, v,
        attention output, two LayerNorm betas, FFN intermediate and output; plus the embedding LayerNorm's."""
        L, H, I = config.num_hidden_layers, config.hidden_size, config.intermediate_size  # noqa: E741
        return L * (7 * H + I) + H

    def hidden_dropout(self, config) -> float:
        """The dropout the model applies on its residual stream (BERT: hidden_dropout_prob, 0.1)."""
        return config.hidden_dropout_prob

    def max_length(self, config) -> int | None:
        """The longest input the position embeddings cover (None: relative positions, no table)."""
        return getattr(config, "max_position_embeddings", None)

    def local_attention(self, config) -> str | None:
        """A sentence when some layers attend only within a window (far tokens cannot see [CLS]/[SEP])."""
        return None

    def norm_params(self, config) -> int:
        """Parameters of every LayerNorm in the encoder (closed form; Houlsby adapters train them)."""
        L, H = config.num_hidden_layers, config.hidden_size
        return (2 * L + 1) * 2 * H

    # --- the task head ---
    def lean_code(self, model) -> None:
        """Replace, in this loaded model only, transformers code that keeps more memory than its sums need,
        with code computing the same values (to float rounding); tests compare the two. The Trainer references
        of `bench perf` train transformers' code as shipped. Every family on SDPA attention gets bench's
        lean attention function (bench/lean.py)."""
        use_lean_attention(model)

    def linear_head(self, model, task) -> list[str]:
        """head=linear: one linear layer on the first token's final state (each token's, for tagging) in place
        of the family's head. Returns the names of the parameters it created. A token head that is already one
        linear layer per token stays as it is."""
        return [] if task.layout == "words" else self.linear_sequence_head(model, task)

    def linear_sequence_head(self, model, task) -> list[str]:
        raise NotImplementedError(f"head=linear for {self.name}")


class FirstToken(nn.Module):
    """Stands in for a pooler: the first token's final hidden state, unchanged."""

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


def eager_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """softmax(q k^T * scaling + mask) v, returning the weights: transformers keeps one copy of this per model
    file and none in a family-neutral place, so bench keeps its own for the families that share it."""
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = nn.functional.softmax(weights, dim=-1)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights
