"""BitFit (Ben Zaken et al. 2022): train bias terms only; nested subsets for curves."""

from dataclasses import dataclass

from methods import register
from methods.base import Method

# Nested subsets, smallest first: each includes the ones before it, named by the projection and norm roles
# each family maps to its own modules (bench/families). "all" is the paper's BitFit: every bias term of the
# encoder (q, k, v, attention-output, FFN intermediate/output biases, every LayerNorm beta, embedding
# LayerNorm and, where the sequence head uses it, the pretrained pooler). Every subset also trains the pooler
# bias where the model has one, as the reference does for any subset (benzakenelad/BitFit
# glue_evaluator.py, _deactivate_relevant_gradients).
SUBSETS = {
    "query_last": ("query",),  # b_q of the last layer only (the smallest point of a curve)
    "query": ("query",),
    "query_intermediate": ("intermediate",),
    "attention": ("key", "value", "attention_output", "attention_norm"),
    "all": (),  # every bias of the encoder
}
ORDER = list(SUBSETS)
POOLER = "pooler."


def roles(subset: str) -> tuple[str, ...]:
    upto = ORDER[: ORDER.index(subset) + 1]
    return tuple(r for name in upto for r in SUBSETS[name])


@dataclass(frozen=True)
class BitFitConfig:
    subset: str = "all"  # query_last < query < query_intermediate < attention < all

    def __post_init__(self):
        if self.subset not in SUBSETS:
            raise ValueError(f"subset {self.subset!r} (choices: {', '.join(ORDER)})")


@register
class BitFit(Method):
    name = "bitfit"
    display_name = "BitFit"
    summary = "bias terms only (all biases + LayerNorm betas + pooler bias)"
    config_cls = BitFitConfig
    knob = "subset"
    knob_label = "bias subset"
    knob_values = tuple(ORDER)
    default_lr = 1e-3

    def expected_params(self, model_config, task, family, cfg, special_positions):
        L, H, I = model_config.num_hidden_layers, model_config.hidden_size, model_config.intermediate_size  # noqa: E741
        pooler = family.pooler_in_backbone and task.kind != "tagging"  # HF builds no pooler for token heads
        if cfg.subset == "all":
            return family.bias_params(model_config) + (
                H if pooler else 0
            )  # BERT: L(7H + I) + H, + the pooler's
        per_layer = {"query": H, "query_intermediate": H + I, "attention": 5 * H + I}
        body = H if cfg.subset == "query_last" else L * per_layer[cfg.subset]
        return body + (H if pooler else 0)

    def unsupported(self, ctx, cfg):
        fam = ctx.family
        if ctx.config is not None and not fam.has_biases(ctx.config):
            return fam.no_bias_reason(ctx.config)
        if cfg.subset == "all":  # every bias there is, whatever the layout
            return None
        fused = sorted({r for r in roles(cfg.subset) if r in fam.fused})
        if fused:
            return (
                f"subset {cfg.subset} trains the {', '.join(fused)} bias alone, but {fam.name} computes "
                f"{', '.join(fused)} in one fused projection ({fam.projection(fused[0])}); use subset=all"
            )
        missing = sorted(r for r in roles(cfg.subset) if fam.projection(r) is None and r not in fam.norms)
        if missing:
            return (
                f"subset {cfg.subset} needs the {', '.join(missing)} projection, which {fam.name} "
                "does not name"
            )
        return None

    def attach(self, model, cfg, ctx):
        fam, base = ctx.family, model.base_model
        layers = list(fam.layers(model))
        if cfg.subset == "all":
            for name, p in base.named_parameters():
                if name.rpartition(".")[2] == "bias":
                    p.requires_grad_(True)
            return model
        chosen = layers[-1:] if cfg.subset == "query_last" else layers
        for layer in chosen:
            for role in roles(cfg.subset):
                bias = getattr(layer.get_submodule(fam.projection(role) or fam.norms[role]), "bias", None)
                if bias is not None:
                    bias.requires_grad_(True)
        for name, p in base.named_parameters():
            if name.startswith(POOLER) and name.endswith(".bias"):
                p.requires_grad_(True)
        return model
