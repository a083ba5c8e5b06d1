"""Dropout and attention that keep less for the backward than torch's CPU kernels, computing the same
values from the same random draws.

torch's CPU dropout keeps its mask as a float tensor (4 bytes an element; its CUDA kernel keeps a bool), and
SDPA's CPU path with dropout (the math path: its flash kernel takes no dropout) keeps three (T x T) float
tensors a head: the probabilities, the dropout mask and the dropped-out probabilities. Here the mask is kept
as bools (1 byte) and the dropped-out probabilities are recomputed from the two in the backward: 5 bytes per
attention score instead of 12. The masks come from the same `bernoulli_` draw on a tensor of the same shape
and dtype, in the same order, so a seed gives the masks torch's dropout gives (tests/test_lean_code.py).
No library offers this: torch's own CPU kernels are what keep the float masks."""

from __future__ import annotations

import torch
from torch import nn

LEAN_SDPA = "bench_lean_sdpa"


def _noise(like: torch.Tensor, p: float) -> torch.Tensor:
    """torch's CPU dropout noise (at::native::_dropout_impl): bernoulli(1 - p) draws divided by 1 - p."""
    return torch.empty_like(like).bernoulli_(1 - p).div_(1 - p)


def _noise_from(keep: torch.Tensor, dtype: torch.dtype, p: float) -> torch.Tensor:
    """The noise again from its bool mask: exactly the values `_noise` drew."""
    return keep.to(dtype).div_(1 - p)


class _DropoutKeepingBools(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p):
        noise = _noise(x, p)
        ctx.save_for_backward(noise.bool())
        ctx.p = p
        return x * noise

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return grad * _noise_from(keep, grad.dtype, ctx.p), None


class LeanDropout(nn.Dropout):
    """nn.Dropout whose CPU training forward keeps a bool mask; otherwise (eval, CUDA, in place, p 0 or 1,
    no gradient wanted) torch's own."""

    def forward(self, x):
        if self._torch_does_it(x):
            return super().forward(x)
        return _DropoutKeepingBools.apply(x, self.p)

    def _torch_does_it(self, x) -> bool:
        return (
            not self.training
            or self.inplace
            or not 0 < self.p < 1
            or x.device.type != "cpu"
            or not (torch.is_grad_enabled() and x.requires_grad)
        )


def use_lean_dropout(model: nn.Module) -> None:
    """Every plain nn.Dropout in `model` (the method's own included) becomes a LeanDropout: the class is
    swapped in place, so hooks, names and state dicts stay as they are (a dropout has no state)."""
    for module in model.modules():
        if type(module) is nn.Dropout:
            module.__class__ = LeanDropout


class _AttentionKeepingBools(torch.autograd.Function):
    """softmax(q k^T * scale + mask) with dropout, times v: SDPA's math path, keeping q, k, v, the
    probabilities and a bool dropout mask."""

    @staticmethod
    def forward(ctx, q, k, v, mask, p, scale):
        scores = torch.matmul(q, k.transpose(-2, -1)).mul_(scale)
        if mask is not None:
            scores = (
                scores.masked_fill_(~mask, float("-inf")) if mask.dtype == torch.bool else scores.add_(mask)
            )
        probs = torch.softmax(scores, -1)
        del scores
        noise = _noise(probs, p)
        out = torch.matmul(probs * noise, v)
        ctx.save_for_backward(q, k, v, probs, noise.bool())
        ctx.p, ctx.scale = p, scale
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, probs, keep = ctx.saved_tensors
        noise = _noise_from(keep, probs.dtype, ctx.p)
        dv = torch.matmul((probs * noise).transpose(-2, -1), grad) if ctx.needs_input_grad[2] else None
        dprobs = torch.matmul(grad, v.transpose(-2, -1)).mul_(noise)
        del noise
        dscores = torch._softmax_backward_data(dprobs, probs, -1, probs.dtype).mul_(ctx.scale)
        dq = torch.matmul(dscores, k) if ctx.needs_input_grad[0] else None
        dk = torch.matmul(dscores.transpose(-2, -1), q) if ctx.needs_input_grad[1] else None
        return dq, dk, dv, None, None, None


def lean_sdpa_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers' SDPA attention function, except: with dropout on a CPU in training, the lean attention
    above (SDPA would take its math path); and values that are a view of a larger buffer (ModernBERT's fused
    Wqkv output) copied first, since the values kept for the backward would hold the whole buffer alive."""
    from transformers.integrations.sdpa_attention import (
        sdpa_attention_forward,  # lazy: transformers is slow to import, and `bench methods` lists families
    )

    if value.untyped_storage().nbytes() > value.numel() * value.element_size():
        value = value.contiguous()
    lean = (
        0 < dropout < 1
        and query.device.type == "cpu"
        and query.dtype == torch.float32  # SDPA computes half-precision inputs in float32 on a CPU
        and torch.is_grad_enabled()
        and key.shape[1] == query.shape[1]  # no grouped-query attention in an encoder
        and (attention_mask is None or _has_a_key_per_row(attention_mask))
    )
    if not lean:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    out = _AttentionKeepingBools.apply(query, key, value, attention_mask, dropout, scale)
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
