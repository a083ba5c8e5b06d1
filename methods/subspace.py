"""Random-subspace training (Aghajanyan, Zettlemoyer, Gupta 2020, arXiv 2012.13255): every tensor of the
model, head included, becomes theta0 + P(theta_d), with theta_d (d entries, zero at the start) the only
thing trained. P is a Fastfood transform per tensor, H G Pi H B (random signs B, Walsh-Hadamard H, a
permutation Pi, a Gaussian diagonal G) of size n = 2^ceil(log2(D)), on theta_d zero-padded to n (or, when
d > n, its first n entries), scaled by 1 / sqrt(D * sum(G^2)) so that every column has unit norm in
expectation; the first D entries are the tensor's update. This is the public intrinsic-dimension code's
transform (fastfood_vars / fastfood_torched: divisor sqrt(LL * sum G^2) times sqrt(DD / LL), and F.pad with
a negative width crops theta_d to LL); its FastWalshHadamard backward that rescales the gradient by
1/sqrt(LL) in some copies is not followed: here the gradient is the transform's exact transpose. DID uses all
d coordinates in every
tensor; SAID gives m of them to one learned scale per tensor (theta0 + lambda_i P(theta_{d-m})).

Our own module: no maintained library implements it correctly (see docs/intrinsic.md's pitfalls). The
transform is regenerated from `projection_seed` at attach, so a checkpoint holds theta_d (+ the scales);
only the permutation is kept (int32, 4 bytes per padded element); signs and diagonal are redrawn from
the tensor's seed at every forward."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from bench.errors import BenchError
from methods import register
from methods.base import Method


def fwht(x: torch.Tensor, bits: int = 4) -> torch.Tensor:
    """Unnormalised fast Walsh-Hadamard transform over the last dimension (a power of two), O(n log n), in
    Sylvester order (equal to x @ scipy.linalg.hadamard(n)). H_n is the Kronecker product of small
    Hadamard blocks (16 x 16), so the transform is log2(n)/4 batched matmuls, one per block axis, instead of
    log2(n) butterfly passes: 4x faster on a CPU (memory passes dominate). Plain torch ops: autograd gives H
    g."""
    n = x.shape[-1]
    if n & (n - 1):
        raise ValueError(f"length {n} is not a power of two")
    lead, outer, left = x.shape[:-1], 1, n.bit_length() - 1
    while left:
        step = min(bits, left)
        m = 1 << step
        x = torch.matmul(hadamard(step, x.dtype, x.device), x.reshape(*lead, outer, m, n // (outer * m)))
        x = x.reshape(*lead, n)
        outer, left = outer * m, left - step
    return x


@functools.lru_cache(maxsize=32)
def hadamard(bits: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The Sylvester Hadamard matrix of size 2^bits."""
    h = torch.ones(1, 1, dtype=dtype, device=device)
    for _ in range(bits):
        h = torch.cat((torch.cat((h, h), 1), torch.cat((h, -h), 1)), 0)
    return h


class Fastfood(nn.Module):
    """P: R^d -> R^D for one tensor of D entries. Only the permutation is kept (int32: 4 bytes per padded
    element); the signs and the Gaussian diagonal are drawn again from the tensor's seed at every forward,
    which costs two random passes against the transform's 2 log2(n)."""

    def __init__(self, d: int, numel: int, seed: int, device: torch.device):
        super().__init__()
        self.d, self.numel, self.seed = d, numel, seed
        self.n = (
            1 << (numel - 1).bit_length()
        )  # the tensor's size rounded up to a power of two, as the reference
        if device.type == "meta":  # counting parameters without weights (`bench params`): shapes only
            perm, self.scale = torch.empty(self.n, dtype=torch.int32, device=device), 1.0
        else:
            generator = torch.Generator().manual_seed(seed)
            perm = torch.randperm(self.n, generator=generator).to(torch.int32)
            _, gauss = self.signs_and_gauss(torch.device("cpu"))
            self.scale = 1.0 / math.sqrt(numel * float((gauss.double() ** 2).sum()))
        # Regenerated from the seed at every attach: not part of the state dict (the checkpoint stays small).
        self.register_buffer("perm", perm, persistent=False)

    def signs_and_gauss(self, device: torch.device):
        generator = torch.Generator(device=device).manual_seed(self.seed + 1)
        signs = torch.randint(0, 2, (self.n,), generator=generator, device=device) * 2 - 1
        return signs, torch.randn(self.n, generator=generator, device=device)

    def forward(self, theta_d: torch.Tensor) -> torch.Tensor:
        signs, gauss = self.signs_and_gauss(theta_d.device)
        # zero-pad to n, or keep the first n coordinates when d > n (the reference's negative F.pad)
        d = theta_d.numel()
        x = nn.functional.pad(theta_d, (0, self.n - d)) if d <= self.n else theta_d[: self.n]
        x = fwht(x * signs.to(x.dtype))
        x = fwht(x.index_select(-1, self.perm) * gauss.to(x.dtype))  # int32 indices: no int64 copy
        return (x * self.scale)[: self.numel]

    def state_bytes(self) -> int:
        return self.perm.numel() * self.perm.element_size()


class Subspace(nn.Module):
    """The trained vector (and SAID's scales), registered once on the model."""

    def __init__(self, d: int, tensors: int, said: bool):
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(d - tensors if said else d))
        self.scales = nn.Parameter(torch.ones(tensors)) if said else None


class Projected(nn.Module):
    """A parametrization: original -> original + [lambda_i] P_i(theta_d). Holds the shared Subspace by
    reference (a plain attribute), so its parameters are owned and counted once."""

    def __init__(self, subspace: Subspace, projection: Fastfood, index: int):
        super().__init__()
        self.projection = projection
        self.index = index
        object.__setattr__(self, "subspace", subspace)  # not a submodule

    def forward(self, original):
        theta, scales = self.subspace.theta, self.subspace.scales
        # Without gradients (evaluation) the update is computed once per value of theta_d and reused.
        key = (theta._version, None if scales is None else scales._version)
        if not torch.is_grad_enabled() and getattr(self, "_cached_key", None) == key:
            return original + self._cached
        delta = self.projection(theta).view_as(original).to(original.dtype)
        if scales is not None:
            delta = delta * scales[self.index]
        if not torch.is_grad_enabled():
            self._cached, self._cached_key = delta, key
        else:
            self._cached_key = None
        return original + delta


@dataclass(frozen=True)
class SubspaceConfig:
    d: int = 1000  # trained coordinates (SAID: d - number of tensors + one scale per tensor)
    # The projection's seed. Fixed by default, so every seed of a curve point trains in the same subspace;
    # None: the run's seed, so each seed draws its own projection (docs/intrinsic.md's protocol). Either way a
    # checkpoint reloads exactly: the options and the seed are recorded with the run.
    projection_seed: int | None = 0

    def __post_init__(self):
        if self.d < 1:
            raise ValueError(f"d {self.d} must be at least 1")


class _Random(Method):
    needs_family = False  # spans every parameter, whatever the architecture

    def knob_points(self, model_config, n: int) -> list[dict]:
        """d log-spaced from the method's smallest d to top_d()."""
        low, high = self.lowest_d(model_config), top_d(model_config)
        return [{"d": v} for v in sorted({int(round(x)) for x in np.geomspace(low, high, max(n, 1))})]

    def lowest_d(self, model_config) -> int:
        return 10  # docs/intrinsic.md: a grid over 10..1e5

    config_cls = SubspaceConfig
    knob = "d"
    knob_label = "subspace dimension d"
    knob_values = (10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000)
    default_lr = 1e-2
    trains_head = False  # the head is in the projected set: d counts everything that trains
    frozen_backbone = False
    in_default_lists = False  # a transform per tensor at every step: opt-in for curves and benchmarks
    said: bool

    def attach(self, model, cfg: SubspaceConfig, ctx):
        targets = [
            (module, name, p)
            for module in model.modules()
            for name, p in list(module.named_parameters(recurse=False))
        ]
        total = sum(p.numel() for _, _, p in targets)
        if cfg.d > total:
            raise BenchError(
                f"option d={cfg.d} for method {self.name} exceeds the {total:,} parameters it spans"
            )
        if self.said and cfg.d <= len(targets):
            raise BenchError(
                f"option d={cfg.d} for method said must exceed the {len(targets)} tensors it gives "
                "a scale each"
            )
        subspace = Subspace(cfg.d, len(targets), self.said)
        model.subspace = subspace  # registered on the model: saved, moved and counted once
        # torch's seed was set to the run's seed before attaching (runner.build_model)
        seed = torch.initial_seed() if cfg.projection_seed is None else cfg.projection_seed
        base = torch.Generator().manual_seed(seed)
        dim = subspace.theta.numel()
        for i, (module, name, p) in enumerate(targets):
            seed = int(
                torch.randint(0, 2**62, (1,), generator=base, device="cpu")
            )  # also under a meta default device
            projection = Fastfood(dim, p.numel(), seed, p.device).to(p.device)
            parametrize.register_parametrization(
                module, name, Projected(subspace, projection, i), unsafe=True
            )
        subspace.requires_grad_(True)
        return model

    def expected_params(self, model_config, task, family, cfg, special_positions):
        return cfg.d

    def counts_after_training(self, model, cfg) -> dict:
        """The projection state kept in memory, in bytes, and per base parameter it spans."""
        projections = [m for m in model.modules() if isinstance(m, Fastfood)]
        state = sum(p.state_bytes() for p in projections)
        spanned = sum(p.numel for p in projections)
        return {"projection_state_bytes": state, "projection_bytes_per_param": state / spanned}

    def no_decay(self, name: str, param) -> bool:
        return True  # theta_d and the scales are coordinates, not weights


@register
class Said(_Random):
    name = "said"
    display_name = "SAID"
    summary = "structure-aware random subspace: theta0 + lambda_i P(theta_{d-m}), one scale per tensor"
    said = True

    def lowest_d(self, model_config) -> int:
        """Twice a bound on the tensor count (16 per BERT/RoBERTa layer, 16 outside): SAID needs d above the
        number of scales it spends."""
        return 2 * (16 * model_config.num_hidden_layers + 16)


def top_d(model_config) -> int:
    """The largest d of a curve: 1e5, or half the encoder's parameters for a small model (d cannot exceed
    them)."""
    c = model_config
    H, I, L = c.hidden_size, c.intermediate_size, c.num_hidden_layers  # noqa: E741
    encoder = (c.vocab_size + c.max_position_embeddings) * H + L * (4 * H * H + 2 * H * I + 9 * H + I)
    return int(min(100000, encoder // 2))


@register
class Did(_Random):
    name = "did"
    display_name = "DID"
    summary = "direct random subspace: theta0 + P(theta_d), Fastfood per tensor"
    said = False
