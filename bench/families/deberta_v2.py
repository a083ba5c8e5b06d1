"""DeBERTa-v2/v3 (He et al. 2021, 2023): disentangled relative attention (content and position projections
inside its own attention code, not transformers' attention interface), a new ContextPooler + linear head."""

from bench.families import register
from bench.families.base import BERT_PROJECTIONS, Family, FirstToken


@register
class DebertaV2(Family):
    name = "deberta-v2"
    model_types = ("deberta-v2",)
    aliases = {
        "deberta-v3-base": "microsoft/deberta-v3-base",
        "deberta-v3-large": "microsoft/deberta-v3-large",
    }
    projections = {
        **BERT_PROJECTIONS,
        "query": "attention.self.query_proj",
        "key": "attention.self.key_proj",
        "value": "attention.self.value_proj",
    }
    attention_implementation = "eager"
    attention_path = None
    attention_note = (
        "its disentangled attention computes scores in its own code, not through transformers' "
        "attention interface, so a key/value prefix would never be read"
    )
    absolute_positions = False
    tiny_config = {
        "max_position_embeddings": 160,
        "relative_attention": True,
        "position_buckets": 16,
        "norm_rel_ebd": "layer_norm",
        "share_att_key": True,
        "pos_att_type": ["p2c", "c2p"],
        "position_biased_input": False,
        "type_vocab_size": 0,
        "pooler_hidden_size": 32,
        "pooler_dropout": 0.0,
        "max_relative_positions": -1,
    }

    def max_length(self, config):
        # Relative positions: no absolute table bounds the length unless the model also adds absolute ones.
        return config.max_position_embeddings if getattr(config, "position_biased_input", True) else None

    def rel_norm(self, config) -> bool:
        return "layer_norm" in str(getattr(config, "norm_rel_ebd", "none")) and config.relative_attention

    def norm_params(self, config):
        extra = 2 * config.hidden_size if self.rel_norm(config) else 0
        return super().norm_params(config) + extra  # + the relative-position embeddings' LayerNorm

    def bias_params(self, config):
        return super().bias_params(config) + (config.hidden_size if self.rel_norm(config) else 0)

    def linear_sequence_head(self, model, task):
        model.pooler = FirstToken()  # classifier(dropout(first token)) instead of classifier(dropout(pooler))
        return []
