"""LoRA's training forward in one autograd node, on peft's own modules (names, state dicts and checkpoints
unchanged). peft computes `base(x) + lora_B(lora_A(x)) * scaling` as five autograd nodes, each writing an
N x H temporary (the scaled branch, the sum, and in backward the scaled gradient and the summed input
gradient); here the low-rank product accumulates into the base output in place (addmm) and its input
gradient into the base's, so a LoRA module costs the base matmul plus four N x r ones. peft has no such path
(its experimental fast_train_mode, huggingface/peft#1286, was closed). Same arithmetic up to float rounding
order: tests compare outputs and gradients with peft's forward."""

from __future__ import annotations

import torch
from peft.tuners.lora.layer import Linear as PeftLoraLinear


class LoraMatmul(torch.autograd.Function):
    """y = x W^T + b + s (x A^T) B^T with W, b frozen; gradients for x, A, B."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling: float):
        x2 = x.reshape(-1, x.shape[-1])
        u = x2 @ lora_a.t()  # N x r
        y = torch.addmm(bias, x2, weight.t()) if bias is not None else x2 @ weight.t()
        y.addmm_(u, lora_b.t(), alpha=scaling)
        ctx.save_for_backward(x2, weight, lora_a, lora_b, u)
        ctx.scaling, ctx.in_shape = scaling, x.shape
        return y.view(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        x2, weight, lora_a, lora_b, u = ctx.saved_tensors
        s = ctx.scaling
        g2 = grad.reshape(-1, grad.shape[-1])
        v = g2 @ lora_b  # N x r
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = (g2 @ weight).addmm_(v, lora_a, alpha=s).view(ctx.in_shape)
        grad_a = (v.t() @ x2).mul_(s) if ctx.needs_input_grad[3] else None
        grad_b = (g2.t() @ u).mul_(s) if ctx.needs_input_grad[4] else None
        return grad_x, None, None, grad_a, grad_b, None


class FusedLoraLinear(PeftLoraLinear):
    """peft's LoRA Linear whose forward takes LoraMatmul when it computes the same thing: one active adapter,
    no LoRA dropout, not merged, frozen base layer, no autocast (mixed precision keeps peft's path). Anything
    else is peft's forward, unchanged."""

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if args or kwargs or not self.fusable(x):
            return super().forward(x, *args, **kwargs)
        (name,) = self.active_adapters
        base, a, b = self.get_base_layer(), self.lora_A[name].weight, self.lora_B[name].weight
        return LoraMatmul.apply(x, base.weight, base.bias, a, b, self.scaling[name])

    def fusable(self, x: torch.Tensor) -> bool:
        active = self.active_adapters
        if self.disable_adapters or self.merged or len(active) != 1 or active[0] not in self.lora_A:
            return False
        base = self.get_base_layer()
        return (
            isinstance(self.lora_dropout[active[0]], torch.nn.Identity)
            and active[0] not in self.lora_variant
            and type(base) is torch.nn.Linear
            and not base.weight.requires_grad
            and (base.bias is None or not base.bias.requires_grad)
            and not torch.is_autocast_enabled(x.device.type)
            and x.dtype == base.weight.dtype == self.lora_A[active[0]].weight.dtype
        )


def fuse(model) -> int:
    """Switches every peft LoRA Linear in `model` to FusedLoraLinear (same object, same parameters); returns
    how many."""
    n = 0
    for module in model.modules():
        if type(module) is PeftLoraLinear:
            module.__class__ = FusedLoraLinear
            n += 1
    return n
