"""The last encoder layer computed for the first token only, where the task head reads nothing else.

A sequence head (BERT's pooler, RoBERTa's and ELECTRA's classification heads, bench's linear head) reads the
first token's final state alone, and in the last layer no other token's state reaches it except through the
keys and values of its attention. So that layer computes keys and values for every token and the query, the
attention output, the feed-forward block and the norms for the first token only: the logits and every
gradient are the full layer's (to float rounding; tests/test_first_token.py), for about five sixths less of
that layer's matrix products and kept activations (one layer in 24 at BERT-large, one in 6 at MiniLM).
transformers has no option for it; the full layer is transformers' code, unchanged.

Dropout in that layer draws masks for the first token only, so from a given seed the masks there are not
those the full layer draws: `last_layer_tokens=all` keeps every token (and torch's masks, with
`dropout_draws=torch`). For the BERT layout (Family.first_token_last_layer: BERT, RoBERTa, ELECTRA, XLM-R):
layer.attention.{self,output}, layer.intermediate, layer.output."""

from __future__ import annotations

import types

from torch import nn

from bench.families.base import eager_attention

FIRST_TOKEN_ONLY = "bench_first_token_only"  # on the last layer: True while its short forward is on


def use_first_token_last_layer(layer: nn.Module) -> None:
    """Give the last layer the short forward (its own forward stays for every other call)."""
    full = layer.forward

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, *args, **kwargs):
        if (
            not getattr(self, FIRST_TOKEN_ONLY)
            or encoder_hidden_states is not None  # a decoder's cross-attention: not an encoder's layer
            or kwargs.get("cache") is not None  # keys and values from a cache (a prefix given that way)
            or kwargs.get("past_key_values") is not None  # its name before transformers 5.24
            or self.chunk_size_feed_forward  # chunked feed-forward: transformers' forward chunks it
        ):
            return full(hidden_states, attention_mask, encoder_hidden_states, *args, **kwargs)
        for name in ("encoder_attention_mask", "cache", "past_key_values"):  # None here; not the attention's
            kwargs.pop(name, None)
        return first_token_forward(self, hidden_states, attention_mask, **kwargs)

    layer.forward = types.MethodType(forward, layer)
    setattr(layer, FIRST_TOKEN_ONLY, True)


def use_all_tokens(model: nn.Module) -> None:
    """Every token through every layer again (the analyses read every token's attention)."""
    for module in model.modules():
        if hasattr(module, FIRST_TOKEN_ONLY):
            setattr(module, FIRST_TOKEN_ONLY, False)


def first_token_forward(layer, hidden_states, attention_mask, **kwargs):
    """BertLayer.forward (transformers 5) with queries from the first token only: (batch, 1, hidden) out."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS  # lazy: transformers is slow to import

    attention = layer.attention.self
    first = hidden_states[:, :1]
    heads = (-1, attention.attention_head_size)
    query = attention.query(first).view(*first.shape[:-1], *heads).transpose(1, 2)
    key = attention.key(hidden_states).view(*hidden_states.shape[:-1], *heads).transpose(1, 2)
    value = attention.value(hidden_states).view(*hidden_states.shape[:-1], *heads).transpose(1, 2)
    if attention_mask is not None and attention_mask.dim() == 4 and attention_mask.shape[2] > 1:
        attention_mask = attention_mask[:, :, :1]  # the first query's row
    attend = ALL_ATTENTION_FUNCTIONS.get_interface(attention.config._attn_implementation, eager_attention)
    context, _ = attend(
        attention,
        query,
        key,
        value,
        attention_mask,
        dropout=attention.dropout.p if attention.training else 0.0,
        scaling=attention.scaling,
        **kwargs,
    )
    context = context.reshape(*first.shape[:-1], -1).contiguous()
    return layer.feed_forward_chunk(layer.attention.output(context, first))
