"""Dropout and attention that keep less for the backward than torch's CPU kernels, computing the same
values from the same random draws.

torch's CPU dropout keeps its mask as a float tensor (4 bytes an element; its CUDA kernel keeps a bool), and
SDPA's CPU path with dropout (the math path: its flash kernel takes no dropout) keeps three (T x T) float
tensors a head: the probabilities, the dropout mask and the dropped-out probabilities. Here the mask is kept
as bools (1 byte) and the dropped-out probabilities are recomputed from the two in the backward: 5 bytes per
attention score instead of 12. With `draws="torch"` the masks come from the same `bernoulli_` draw on a
tensor of the same shape and dtype, in the same order, so a seed gives the masks torch's dropout gives
(tests/test_lean_code.py).
No library offers this: torch's own CPU kernels are what keep the float masks.

Drawing the masks is itself a large share of a CPU step: torch's CPU `bernoulli_` draws one double from its
Mersenne Twister per element (about 7-12 ns an element measured on x86 CPUs). `draws="fast"` (the
`dropout_draws` option's default) cuts four 16-bit lanes from each 64-bit draw of the same generator and
keeps an element when its lane is at or above p x 65536, rounded (about 2.5 ns an element with the
noise): the probability is p rounded to a multiple of 1/65536 (0.1 -> 0.100006; FlashAttention rounds it
to 1/256), kept elements are scaled by the inverse of that rounded keep probability, so the expectation
stays exact. A seed then gives other masks than torch's; `draws="torch"` keeps torch's exactly."""

from __future__ import annotations

import torch
from torch import nn

LEAN_SDPA = "bench_lean_sdpa"


LEVELS = 1 << 16  # the fast draws' 16-bit lanes


class MaskDraws:
    """The dropout masks of one probability p: which elements stay (a bool mask) and their scale."""

    def __init__(self, p: float, draws: str):
        self.cut = round(p * LEVELS)
        # p within 2^-17 of 0 or 1 rounds to a cut that keeps all or nothing: torch's draws there
        self.fast = draws == "fast" and 0 < self.cut < LEVELS
        self.keep_probability = (LEVELS - self.cut) / LEVELS if self.fast else 1 - p
        # What a kept element is multiplied by. torch's noise holds 1 / (1 - p) as its float32 division
        # computes it; that value times x is the product torch's dropout forms, bit for bit.
        self.scale = (
            1 / self.keep_probability
            if self.fast
            else torch.ones((), dtype=torch.float32).div_(self.keep_probability).item()
        )

    def keep(self, like: torch.Tensor) -> torch.Tensor:
        if not self.fast:  # torch's CPU dropout noise (at::native::_dropout_impl), its bernoulli draws
            return torch.empty_like(like).bernoulli_(self.keep_probability).bool()
        n = like.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(torch.iinfo(torch.int64).min, None)
        lanes = words.view(torch.int16)[:n]  # uniform over [-2^15, 2^15): lane + 2^15 < cut drops
        return (lanes >= self.cut - LEVELS // 2).view(like.shape)

    def apply(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x dropped out: 0 where the mask drops, x times the scale where it keeps (two passes, no float noise
        tensor)."""
        return (x * keep).mul_(self.scale)


class _DropoutKeepingBools(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, masks):
        keep = masks.keep(x)
        ctx.save_for_backward(keep)
        ctx.masks = masks
        return masks.apply(x, keep)

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return ctx.masks.apply(grad, keep), None


class LeanDropout(nn.Dropout):
    """nn.Dropout whose CPU training forward draws its mask as `draws` says and keeps it as bools for the
    backward; otherwise (eval, CUDA, in place, p 0 or 1) torch's own. Whether a gradient is wanted does not
    change the draws: a layer recomputed under activation checkpointing (whose input may require a gradient
    only then) must draw the masks its first forward drew."""

    draws = "torch"

    def forward(self, x):
        if not self.training or self.inplace or not 0 < self.p < 1 or x.device.type != "cpu":
            return super().forward(x)
        masks = MaskDraws(self.p, self.draws)
        if torch.is_grad_enabled() and x.requires_grad:
            return _DropoutKeepingBools.apply(x, masks)
        return masks.apply(x, masks.keep(x))


def use_lean_dropout(model: nn.Module, draws: str, attention_modules=()) -> None:
    """Every plain nn.Dropout in `model` (the method's own included) becomes a LeanDropout drawing its masks
    as `draws` says: the class is swapped in place, so hooks, names and state dicts stay as they are (a
    dropout has no state). The lean attention draws as `draws` says in `attention_modules` (the modules
    transformers' attention interface receives)."""
    for module in model.modules():
        if type(module) is nn.Dropout:
            module.__class__ = LeanDropout
        if isinstance(module, LeanDropout):
            module.draws = draws
    for module in attention_modules:
        module.bench_dropout_draws = draws


class _AttentionKeepingBools(torch.autograd.Function):
    """softmax(q k^T * scale + mask) with dropout, times v: SDPA's math path, keeping q, k, v, the
    probabilities and a bool dropout mask."""

    @staticmethod
    def forward(ctx, q, k, v, mask, masks, scale):
        # Heads laid out contiguously once: the (batch, T, heads, d) projections' per-head views cannot be
        # batched by a matrix product without a copy, and every product of the backward would copy them again
        # (k^T transposed at that).
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        scores = torch.matmul(q, k.transpose(-2, -1)).mul_(scale)
        if mask is not None:
            scores = (
                scores.masked_fill_(~mask, float("-inf")) if mask.dtype == torch.bool else scores.add_(mask)
            )
        probs = torch.softmax(scores, -1)
        del scores
        keep = masks.keep(probs)
        out = torch.matmul(masks.apply(probs, keep), v)
        ctx.save_for_backward(q, k, v, probs, keep)
        ctx.masks, ctx.scale = masks, scale
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, probs, keep = ctx.saved_tensors
        masks = ctx.masks
        grad = grad.contiguous()  # read by two products
        dv = (
            torch.matmul(masks.apply(probs, keep).transpose(-2, -1), grad)
            if ctx.needs_input_grad[2]
            else None
        )
        dprobs = masks.apply(torch.matmul(grad, v.transpose(-2, -1)), keep)
        dscores = torch._softmax_backward_data(dprobs, probs, -1, probs.dtype).mul_(ctx.scale)
        dq = torch.matmul(dscores, k) if ctx.needs_input_grad[0] else None
        dk = torch.matmul(dscores.transpose(-2, -1), q) if ctx.needs_input_grad[1] else None
        return dq, dk, dv, None, None, None


def lean_sdpa_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers' SDPA attention function, except: with dropout on a CPU in training, the lean attention
    above (SDPA would take its math path), its masks drawn as the module's `bench_dropout_draws` says
    (torch's when unset); and values that are a view of a larger buffer (ModernBERT's fused Wqkv output)
    copied first, since the values kept for the backward would hold the whole buffer alive."""
    from transformers.integrations.sdpa_attention import (
        sdpa_attention_forward,  # lazy: transformers is slow to import, and `bench methods` lists families
    )

    if value.untyped_storage().nbytes() > value.numel() * value.element_size():
        value = value.contiguous()
    lean = (
        0 < dropout < 1
        and query.device.type == "cpu"
        and query.dtype == torch.float32  # SDPA computes half-precision inputs in float32 on a CPU
        and key.shape[1] == query.shape[1]  # no grouped-query attention in an encoder
        and (attention_mask is None or _has_a_key_per_row(attention_mask))
    )
    if not lean:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    masks = MaskDraws(dropout, getattr(module, "bench_dropout_draws", "torch"))
    out = _AttentionKeepingBools.apply(query, key, value, attention_mask, masks, scale)
    return out.transpose(1, 2).contiguous(), None


def _has_a_key_per_row(mask: torch.Tensor) -> bool:
    """A float mask, or a bool one leaving every query a key. For a query with no key SDPA's safe softmax
    gives zeros where a plain softmax gives NaN, so such masks go to SDPA."""
    return mask.dtype != torch.bool or bool(mask.any(-1).all())


def use_lean_attention(model: nn.Module) -> None:
    """Route a model that uses transformers' SDPA attention through `lean_sdpa_attention`."""
    from transformers import AttentionInterface  # lazy: as above
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    if model.config._attn_implementation != "sdpa":
        return
    AttentionInterface.register(LEAN_SDPA, lean_sdpa_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(LEAN_SDPA, sdpa_mask)
    model.config._attn_implementation = LEAN_SDPA
