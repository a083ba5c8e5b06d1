"""PASTA (Yang et al., EACL 2023): one trainable vector per special-token position per layer,
added to the hidden state at that position at the input of each encoder layer.

Our own module: no maintained library implements it, and the reference code hard-codes BERT's
token ids 101/102. Positions here come from the tokenizer's special-tokens mask of each batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bench.errors import BenchError
from methods import register
from methods.base import Method, check_range


@dataclass(frozen=True)
class PastaConfig:
    layers: str = "all"  # all | last:K | first:K | a list such as "0,3,5"
    tokens: str = "all"  # all special positions | cls (the first position only)
    dropout: float | None = None  # None: the model's hidden dropout (BERT's hidden_dropout_prob: 0.1)
    init_std: float | None = None  # None: the model's initializer_range (0.02)
    last_k: int | None = None  # knob for curves: shorthand for layers="last:K"

    def __post_init__(self):
        if self.tokens not in ("all", "cls"):
            raise ValueError(f"tokens {self.tokens!r} (choices: all, cls)")
        check_range("dropout", self.dropout, 0, 1)
        check_range("init_std", self.init_std, 0, float("inf"))
        parse_layers(self.layers if self.last_k is None else f"last:{self.last_k}", 10**6)


def parse_layers(spec, n_layers: int) -> list[int]:
    spec = str(spec).strip()
    try:
        if spec == "all":
            ids = list(range(n_layers))
        elif spec.startswith(("last:", "first:")):
            k = int(spec.split(":", 1)[1])
            if k < 1:
                raise ValueError
            k = k if k <= n_layers else n_layers + 1  # out of range: reported below
            ids = list(range(n_layers - k, n_layers)) if spec.startswith("last:") else list(range(k))
        else:
            ids = sorted({int(x) for x in spec.strip("[]").split(",") if x.strip()})
    except ValueError:
        raise ValueError(
            f"layers {spec!r} (choices: all, last:K, first:K, comma-separated indices)"
        ) from None
    if not ids or ids[0] < 0 or ids[-1] >= n_layers or len(ids) > n_layers:
        raise ValueError(f"layers {spec!r} out of range for {n_layers} layers")
    return ids


class PastaVectors(nn.Module):
    """vectors[j, k] is added at the k-th special position of the input of layer layer_ids[j]."""

    def __init__(
        self, layer_ids: list[int], positions: int, hidden: int, dropout: float, std: float, cls_only: bool
    ):
        super().__init__()
        self.layer_ids = layer_ids
        self.positions = 1 if cls_only else positions
        self.vectors = nn.Parameter(torch.randn(len(layer_ids), self.positions, hidden) * std)
        self.dropout = nn.Dropout(dropout)
        self._where: tuple[torch.Tensor, torch.Tensor] | None = (
            None  # (batch, token) of each special position
        )
        self._which: torch.Tensor | None = None  # k at each of those positions

    def capture_positions(self, module, args, kwargs):
        mask = kwargs.pop("special_tokens_mask", None)
        if mask is None:
            raise BenchError(
                "PASTA needs the batch's special_tokens_mask (tokenise with return_special_tokens_mask=True)"
            )
        mask = mask.bool()
        attention = kwargs.get("attention_mask")
        if attention is not None:  # HF tokenizers mark padding as special when they pad
            mask = mask & attention.bool()
        ordinal = torch.where(mask, mask.long().cumsum(1) - 1, -1)
        self._where = ((ordinal >= 0) & (ordinal < self.positions)).nonzero(as_tuple=True)
        self._which = ordinal[self._where]
        return args, kwargs

    def layer_hook(self, j: int):
        def add_vectors(module, args, kwargs):
            # Touch only the special positions: gathering a (B, T, H) tensor of mostly zeros and
            # scattering its gradient back into M rows made PASTA's step slower than full FT on CoNLL.
            # One dropout mask per example and position, as the reference's dropout on the (B, T, H) sum of
            # vectors (zero elsewhere) draws; a shared (M, H) mask would tie every example of the batch.
            delta = self.dropout(self.vectors[j][self._which])  # (special positions in the batch, H)
            if args:  # every family's encoder passes the block's input first, positionally
                hidden = args[0].index_put(self._where, delta.to(args[0].dtype), accumulate=True)
                return (hidden, *args[1:]), kwargs
            hidden = kwargs["hidden_states"]
            return args, {
                **kwargs,
                "hidden_states": hidden.index_put(self._where, delta.to(hidden.dtype), accumulate=True),
            }

        return add_vectors


@register
class Pasta(Method):
    name = "pasta"
    display_name = "PASTA"
    summary = "special-token vectors added at every layer's input (L*M*H params)"
    config_cls = PastaConfig
    knob = "last_k"
    knob_label = "layers with vectors (last k; 1/cls: [CLS] of the last layer)"
    default_lr = 3e-3
    batch_columns = ("special_tokens_mask",)

    def no_decay(self, name: str, param) -> bool:
        # The reference trains the vectors without weight decay (luka-group/PASTA).
        return super().no_decay(name, param) or name.endswith("pasta.vectors")

    def extra_counts(self, ctx) -> dict:
        return {"M": ctx.special_positions()}

    def expected_params(self, model_config, task, family, cfg, special_positions):
        layers = len(
            parse_layers(
                cfg.layers if cfg.last_k is None else f"last:{cfg.last_k}", model_config.num_hidden_layers
            )
        )
        return layers * (1 if cfg.tokens == "cls" else special_positions) * model_config.hidden_size

    def knob_value_label(self, options: dict) -> str:
        return super().knob_value_label(options) + ("/cls" if options.get("tokens") == "cls" else "")

    def knob_points(self, model_config, n: int) -> list[dict]:
        """[CLS] only in the last layer, then vectors at every special position of the last k layers,
        k log-spaced up to all layers."""
        layers = model_config.num_hidden_layers
        ks = sorted({int(round(k)) for k in np.geomspace(1, layers, max(n - 1, 1))})
        return [{"last_k": 1, "tokens": "cls"}] + [{"last_k": k} for k in ks]

    def attach(self, model, cfg: PastaConfig, ctx):
        layers = ctx.family.layers(model)
        conf = model.config
        try:
            ids = parse_layers(cfg.layers if cfg.last_k is None else f"last:{cfg.last_k}", len(layers))
        except ValueError as e:  # the range is only known once the model is
            raise BenchError(f"option for method pasta: {e}") from None
        pasta = PastaVectors(
            ids,
            ctx.special_positions(),
            conf.hidden_size,
            ctx.family.hidden_dropout(conf) if cfg.dropout is None else cfg.dropout,
            conf.initializer_range if cfg.init_std is None else cfg.init_std,
            cls_only=cfg.tokens == "cls",
        )
        model.base_model.pasta = pasta  # registered as a submodule: saved, moved, counted with the model
        model.register_forward_pre_hook(pasta.capture_positions, with_kwargs=True)
        for j, layer_id in enumerate(ids):
            layers[layer_id].register_forward_pre_hook(pasta.layer_hook(j), with_kwargs=True)
        return model
