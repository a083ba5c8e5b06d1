"""BERT-layout layers computed for the tokens the result needs: the real tokens (not the padding) and, in the
last layer under a sequence head, the first token.

Padding (`padding_tokens=skip`): a batch is padded to its longest row, and a padding position is one no query
attends to (the attention mask hides it as a key), so nothing it computes reaches a real token. Each layer
then runs its per-token work (query, key and value projections, attention output, feed-forward, norms,
dropout) on the real tokens alone, gathered out of the (batch, T) grid, and the attention on the padded
grid (zeros at the padding, masked as before): every real token's state and every gradient is the padded
layer's, to float rounding (tests/test_needed_tokens.py), and the states at the padding are zeros. The heads
read real tokens only (a sequence head the first; a token head's loss and predictions skip the padding).
Length-grouped batches are a few percent padding; plainly shuffled ones (`batch_order=uniform`, the paper
presets' order) about half, which is the work this skips. The padded layer runs where less than
MIN_PADDING of the grid is padding: there the gathers would cost more than they save.

First token (`last_layer_tokens=head`): a sequence head (BERT's pooler, RoBERTa's and ELECTRA's
classification heads, bench's linear head) reads the first token's final state alone, and in the last layer
no other token's state reaches it except through the keys and values of its attention. So that layer
computes keys and values for every real token and the query, the attention output, the feed-forward block
and the norms for the first token only: the same logits and gradients, for about five sixths less of that
layer's work and kept activations (one layer in 24 at BERT-large, one in 6 at MiniLM).

Dropout then draws masks for the tokens computed only, so from a given seed its masks are not those the
padded layer draws: `padding_tokens=compute` and `last_layer_tokens=all` keep every token (and torch's masks,
with `dropout_draws=torch`). transformers has no option for either on a CPU (its padding-free training
needs FlashAttention's variable-length kernels); the padded layer, where it runs, is transformers' code.
For the BERT layout (Family.computes_needed_tokens: BERT, RoBERTa, ELECTRA, XLM-R):
layer.attention.{self,output}, layer.intermediate, layer.output."""

from __future__ import annotations

import types

import torch
from torch import nn

from bench.families.base import eager_attention

FIRST_TOKEN_ONLY = "bench_first_token_only"  # on a layer: its queries come from the first token only
SKIP_PADDING = "bench_skip_padding"  # on a layer: it computes the real tokens only
MIN_PADDING = 0.05  # the share of a batch's (batch, T) grid below which the padded layer runs
_NOT_FOR_THE_ATTENTION = ("encoder_attention_mask", "cache", "past_key_values")  # None on the short path
# The mask last read and its real tokens: every layer of a forward receives the same mask object, and finding
# the tokens (a nonzero) would make a GPU wait for its queue once a layer. Held, so its id is not reused.
_last_read: tuple = (None, None)


def use_needed_tokens(layer: nn.Module, skip_padding: bool, first_token_only: bool) -> None:
    """Give a BERT-layout layer the forward that computes the tokens needed (its own forward stays for every
    other call)."""
    full = layer.forward

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, *args, **kwargs):
        if (
            encoder_hidden_states is not None  # a decoder's cross-attention: not an encoder's layer
            or kwargs.get("cache") is not None  # keys and values from a cache (a prefix given that way)
            or kwargs.get("past_key_values") is not None  # its name before transformers 5.24
            or self.chunk_size_feed_forward  # chunked feed-forward: transformers' forward chunks it
        ):
            return full(hidden_states, attention_mask, encoder_hidden_states, *args, **kwargs)
        first = getattr(self, FIRST_TOKEN_ONLY)
        real = real_tokens(attention_mask) if getattr(self, SKIP_PADDING) else None
        if not first and real is None:
            return full(hidden_states, attention_mask, encoder_hidden_states, *args, **kwargs)
        for name in _NOT_FOR_THE_ATTENTION:
            kwargs.pop(name, None)
        return needed_tokens_forward(self, hidden_states, attention_mask, real, first, **kwargs)

    layer.forward = types.MethodType(forward, layer)
    setattr(layer, SKIP_PADDING, skip_padding)
    setattr(layer, FIRST_TOKEN_ONLY, first_token_only)


def use_all_tokens(model: nn.Module) -> None:
    """Every token through every layer again (the analyses read every token's attention)."""
    for module in model.modules():
        if hasattr(module, FIRST_TOKEN_ONLY):
            setattr(module, FIRST_TOKEN_ONLY, False)
            setattr(module, SKIP_PADDING, False)


def real_tokens(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Flat indices into the (batch, T) grid of the tokens some query may attend to, in order; None where
    every token is one, or where padding is under MIN_PADDING of the grid. `mask`: the (batch, 1, queries,
    T) mask the layers receive, bool (True: attend) or additive float (0 or a bias: attend; the dtype's
    minimum or -inf: hidden)."""
    global _last_read
    if mask is None or mask.dim() != 4:
        return None
    last_mask, last_real = _last_read
    if mask is last_mask:
        return last_real
    attended = mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2
    keys = attended.any(2).any(1).reshape(-1)  # (batch x T): some query of some head sees it
    real = keys.nonzero().squeeze(1)
    real = real if real.numel() <= (1 - MIN_PADDING) * keys.numel() else None
    _last_read = (mask, real)
    return real


def needed_tokens_forward(layer, hidden_states, attention_mask, real, first_token_only, **kwargs):
    """BertLayer.forward (transformers 5) on the real tokens (`real`: flat indices, None for all) with
    queries from every real token, or from the first token only: (batch, T, hidden) out, zeros at the
    padding, or (batch, 1, hidden)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS  # lazy: transformers is slow to import

    attention = layer.attention.self
    batch, length, width = hidden_states.shape

    def gathered(x):  # (batch, T, d) -> (real tokens, d)
        flat = x.reshape(batch * length, -1)
        return flat if real is None else flat.index_select(0, real)

    def padded(x):  # (real tokens, d) -> (batch, T, d), zeros at the padding
        if real is None:
            return x.view(batch, length, -1)
        return x.new_zeros(batch * length, x.shape[-1]).index_copy(0, real, x).view(batch, length, -1)

    def heads(x):  # (batch, T, heads x d) -> (batch, heads, T, d), a view as transformers' layer has it
        return x.view(*x.shape[:2], -1, attention.attention_head_size).transpose(1, 2)

    tokens = gathered(hidden_states)
    key, value = heads(padded(attention.key(tokens))), heads(padded(attention.value(tokens)))
    if first_token_only:
        queries = hidden_states[:, :1]  # (batch, 1, hidden)
        query = heads(attention.query(queries))
        if attention_mask is not None and attention_mask.dim() == 4 and attention_mask.shape[2] > 1:
            attention_mask = attention_mask[:, :, :1]  # the first query's row
    else:
        queries = tokens
        query = heads(padded(attention.query(tokens)))
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
    context = context.reshape(batch, -1, width)
    if first_token_only:
        return layer.feed_forward_chunk(layer.attention.output(context, queries))
    out = layer.feed_forward_chunk(layer.attention.output(gathered(context), queries))
    return padded(out)
