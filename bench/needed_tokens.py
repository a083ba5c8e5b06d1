"""BERT-layout layers computed for the tokens the result needs: the real tokens (not the padding) and, in the
last layer under a sequence head, the first token.

Padding (`padding_tokens=skip`): a batch is padded to its longest row, and a padding position is one no query
attends to (the attention mask hides it as a key), so nothing it computes reaches a real token. Each layer
then runs its per-token work (query, key and value projections, attention output, feed-forward, norms,
dropout) on the real tokens alone, gathered out of the (batch, T) grid, and the attention on each row's
real tokens, the rows sorted by length and run in ATTENTION_GROUPS groups, each on a grid as long as its
longest row (where the mask hides more than padding: on the whole grid, zeros at the padding, masked as
before). Every real token's state and every gradient is the padded layer's, to float rounding
(tests/test_needed_tokens.py), and the states at the padding are zeros. The heads
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
from dataclasses import dataclass

import torch
from torch import nn

from bench.families.base import eager_attention

FIRST_TOKEN_ONLY = "bench_first_token_only"  # on a layer: its queries come from the first token only
SKIP_PADDING = "bench_skip_padding"  # on a layer: it computes the real tokens only
ATTENTION_GROUPS = 4  # the rows' attention runs in this many groups of similar lengths
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
        layout = token_layout(attention_mask) if getattr(self, SKIP_PADDING) else None
        if not first and layout is None:
            return full(hidden_states, attention_mask, encoder_hidden_states, *args, **kwargs)
        for name in _NOT_FOR_THE_ATTENTION:
            kwargs.pop(name, None)
        return needed_tokens_forward(self, hidden_states, attention_mask, layout, first, **kwargs)

    layer.forward = types.MethodType(forward, layer)
    setattr(layer, SKIP_PADDING, skip_padding)
    setattr(layer, FIRST_TOKEN_ONLY, first_token_only)


def use_all_tokens(model: nn.Module) -> None:
    """Every token through every layer again (the analyses read every token's attention)."""
    for module in model.modules():
        if hasattr(module, FIRST_TOKEN_ONLY):
            setattr(module, FIRST_TOKEN_ONLY, False)
            setattr(module, SKIP_PADDING, False)


@dataclass(frozen=True)
class Group:
    """Rows of the batch whose attention runs together, on a grid as long as their longest row."""

    index: torch.Tensor  # (rows x length): each grid cell's real token (its row's t-th), or N for padding
    cells: torch.Tensor  # the grid cells that hold real tokens, flat, in order
    mask: torch.Tensor  # (rows, 1, 1, length): the keys each row attends to, in the layers' mask dtype
    rows: int
    length: int


@dataclass(frozen=True)
class Layout:
    """Where a padded batch's real tokens are, and the groups its attention runs in."""

    real: torch.Tensor  # (N,) flat indices into the (batch, T) grid, in order
    groups: tuple[Group, ...]  # empty: the mask is not padding alone, attention on the (batch, T) grid
    inverse: torch.Tensor | None  # the groups' real tokens, concatenated, back to the order of `real`


def token_layout(mask: torch.Tensor | None) -> Layout | None:
    """The real tokens of a batch: those some query may attend to. None where every token is one, or where
    padding is under MIN_PADDING of the grid. `mask`: the (batch, 1, queries, T) mask the layers receive,
    bool (True: attend) or additive float (0 or a bias: attend; the dtype's minimum or -inf: hidden)."""
    global _last_read
    if mask is None or mask.dim() != 4:
        return None
    last_mask, last_layout = _last_read
    if mask is last_mask:
        return last_layout
    attended = mask if mask.dtype == torch.bool else mask > torch.finfo(mask.dtype).min / 2
    keys = attended.any(2).any(1)  # (batch, T): some query of some head sees it
    real = keys.reshape(-1).nonzero().squeeze(1)
    layout = None
    if real.numel() <= (1 - MIN_PADDING) * keys.numel():
        # A padding mask: every real query sees exactly its row's real keys. Then the attention may run on
        # each row's real tokens alone, rows of similar length together (other masks: on the whole grid).
        padding_only = (
            mask.shape[1] == 1
            and ((attended[:, 0] == keys[:, None, :]) | ~keys[:, : attended.shape[2], None]).all().item()
        )
        groups = _groups(keys, real.numel(), mask.dtype) if padding_only else ()
        order = torch.cat([g.index[g.cells] for g in groups]) if groups else None
        layout = Layout(real, groups, None if order is None else order.argsort())
    _last_read = (mask, layout)
    return layout


def _groups(keys: torch.Tensor, n: int, dtype) -> tuple[Group, ...]:
    """The rows sorted by length and cut into ATTENTION_GROUPS groups of about equal size (attention then
    works on about the sum of each group's rows x its longest row squared, not batch x T squared). `n`: the
    number of real tokens."""
    lengths = keys.sum(1)
    starts = lengths.cumsum(0) - lengths  # each row's first real token among the n
    by_length = lengths.argsort(descending=True, stable=True)
    groups = []
    for rows in by_length.tensor_split(min(ATTENTION_GROUPS, len(by_length))):
        length = int(lengths[rows[0]])
        t = torch.arange(length, device=keys.device)
        inside = t < lengths[rows, None]  # (rows, length)
        index = torch.where(inside, starts[rows, None] + t, n).reshape(-1)
        grid_keys = inside[:, None, None, :]
        mask = (
            grid_keys
            if dtype == torch.bool
            else torch.zeros(grid_keys.shape, dtype=dtype, device=keys.device).masked_fill_(
                ~grid_keys, torch.finfo(dtype).min
            )
        )
        groups.append(Group(index, inside.reshape(-1).nonzero().squeeze(1), mask, len(rows), length))
    return tuple(groups)


def needed_tokens_forward(layer, hidden_states, attention_mask, layout, first_token_only, **kwargs):
    """BertLayer.forward (transformers 5) on the real tokens (`layout`; None: every token) with queries from
    every real token, or from the first token only: (batch, T, hidden) out, zeros at the padding, or
    (batch, 1, hidden)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS  # lazy: transformers is slow to import

    attention = layer.attention.self
    batch, length, _ = hidden_states.shape
    width = attention.all_head_size  # of the queries, keys, values and attention context
    real = None if layout is None else layout.real

    def gathered(x):  # (batch, T, d) -> (real tokens, d)
        flat = x.reshape(batch * length, -1)
        return flat if real is None else flat.index_select(0, real)

    def padded(x):  # (real tokens, d) -> (batch, T, d), zeros at the padding
        if real is None:
            return x.view(batch, length, -1)
        # index_put, not index_copy: index_copy's backward keeps its source alive (a token state a layer)
        return x.new_zeros(batch * length, x.shape[-1]).index_put((real,), x).view(batch, length, -1)

    def heads(x):  # (batch, T, heads x d) -> (batch, heads, T, d), a view as transformers' layer has it
        return x.view(*x.shape[:2], -1, attention.attention_head_size).transpose(1, 2)

    attend = ALL_ATTENTION_FUNCTIONS.get_interface(attention.config._attn_implementation, eager_attention)
    options = {"dropout": attention.dropout.p if attention.training else 0.0, "scaling": attention.scaling}
    tokens = gathered(hidden_states)
    key, value = attention.key(tokens), attention.value(tokens)
    if first_token_only:
        queries = hidden_states[:, :1]  # (batch, 1, hidden)
        if attention_mask is not None and attention_mask.dim() == 4 and attention_mask.shape[2] > 1:
            attention_mask = attention_mask[:, :, :1]  # the first query's row
        q, k, v = heads(attention.query(queries)), heads(padded(key)), heads(padded(value))
        context, _ = attend(attention, q, k, v, attention_mask, **options, **kwargs)
        return layer.feed_forward_chunk(layer.attention.output(context.reshape(batch, 1, width), queries))
    query = attention.query(tokens)
    if layout.groups:
        # each group's grid from the real tokens plus one zero row standing in for its padding
        query, key, value = (torch.cat([x, x.new_zeros(1, width)]) for x in (query, key, value))
        parts = []
        for g in layout.groups:
            q, k, v = (
                heads(x.index_select(0, g.index).view(g.rows, g.length, width)) for x in (query, key, value)
            )
            context, _ = attend(attention, q, k, v, g.mask, **options, **kwargs)
            parts.append(context.reshape(-1, width).index_select(0, g.cells))
        context = torch.cat(parts).index_select(0, layout.inverse)
    else:
        q, k, v = heads(padded(query)), heads(padded(key)), heads(padded(value))
        context, _ = attend(attention, q, k, v, attention_mask, **options, **kwargs)
        context = gathered(context.reshape(batch, length, width))
    return padded(layer.feed_forward_chunk(layer.attention.output(context, tokens)))
