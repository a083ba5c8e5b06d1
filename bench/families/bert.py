"""BERT (Devlin et al. 2019): post-LayerNorm blocks, a pretrained pooler used by the sequence head."""

from bench.families import register
from bench.families.base import Family, FirstToken


@register
class Bert(Family):
    name = "bert"
    model_types = ("bert",)
    aliases = {
        "bert-base-cased": "google-bert/bert-base-cased",
        "bert-base-uncased": "google-bert/bert-base-uncased",
        "bert-large-cased": "google-bert/bert-large-cased",
        "bert-large-uncased": "google-bert/bert-large-uncased",
    }
    pooler_in_backbone = True
    computes_needed_tokens = True
    tiny_config = {"max_position_embeddings": 160}

    def linear_sequence_head(self, model, task):
        model.base_model.pooler = FirstToken()  # the classifier now reads the first token's state directly
        return []
