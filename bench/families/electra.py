"""ELECTRA (Clark et al. 2020), the discriminator: BERT's blocks and WordPiece, a new dense + linear head on
the first token and no pooler."""

from bench.families import register
from bench.families.roberta import Roberta


@register
class Electra(Roberta):
    name = "electra"
    model_types = ("electra",)
    aliases = {
        "electra-base": "google/electra-base-discriminator",
        "electra-large": "google/electra-large-discriminator",
    }
    special_positions = (2, 3)
    prefix_space_for_words = False
    tiny_config = {"max_position_embeddings": 160, "embedding_size": 32}
    tiny_tokenizer = "wordpiece"

    def max_length(self, config):
        return config.max_position_embeddings

    def bias_params(self, config):
        # the embedding LayerNorm has the embedding's width; + the embeddings' projection to the hidden width
        # where the embedding is narrower (ELECTRA-small)
        H, E = config.hidden_size, config.embedding_size
        return super().bias_params(config) - H + E + (H if E != H else 0)

    def norm_params(self, config):
        # the embedding LayerNorm has the embedding's width
        return super().norm_params(config) - 2 * config.hidden_size + 2 * config.embedding_size
