"""BitFit (Ben Zaken et al. 2022): train bias terms only; nested subsets for curves."""

from dataclasses import dataclass

from methods import register
from methods.base import Method

# Nested subsets, smallest first: each includes the ones before it. The last is the paper's
# BitFit: q,k,v, attention-output, FFN intermediate/output biases, every LayerNorm beta
# (embedding LayerNorm included). Every subset also trains the pooler bias where the model has a
# pooler, as the reference does for any subset (benzakenelad/BitFit glue_evaluator.py,
# _deactivate_relevant_gradients).
POOLER = "pooler.dense.bias"
SUBSETS = {
    "query_last": (),  # b_q of the last layer only (the smallest point of a curve)
    "query": ("attention.self.query.bias",),
    "query_intermediate": ("intermediate.dense.bias",),
    "attention": ("attention.self.key.bias", "attention.self.value.bias",
                  "attention.output.dense.bias", "attention.output.LayerNorm.bias"),
    "all": ("output.dense.bias", "output.LayerNorm.bias", "embeddings.LayerNorm.bias"),
}
ORDER = list(SUBSETS)


def bias_suffixes(subset: str) -> tuple[str, ...]:
    upto = ORDER[: ORDER.index(subset) + 1]
    return tuple(s for name in upto for s in SUBSETS[name])


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
        pooler = family == "bert" and task.kind != "tagging"  # HF builds no pooler for RoBERTa heads / tagging
        per_layer = {"query": H, "query_intermediate": H + I, "attention": 5 * H + I, "all": 7 * H + I}
        body = H if cfg.subset == "query_last" else L * per_layer[cfg.subset]
        return body + (H if cfg.subset == "all" else 0) + (H if pooler else 0)  # embedding LayerNorm beta, pooler

    def attach(self, model, cfg, ctx):
        base = model.base_model
        if cfg.subset == "query_last":
            last = model.config.num_hidden_layers - 1
            base.encoder.layer[last].attention.self.query.bias.requires_grad_(True)
        suffixes = (*bias_suffixes(cfg.subset), POOLER)
        for name, p in base.named_parameters():
            if name.endswith(suffixes):
                p.requires_grad_(True)
        return model
