"""RoBERTa (Liu et al. 2019): BERT's blocks, byte-level BPE, <s> a </s></s> b </s>, positions after the
padding index, a new dense + tanh + linear head and no pooler."""

from bench.families import register
from bench.families.base import Family, LinearOnFirstToken


@register
class Roberta(Family):
    name = "roberta"
    model_types = ("roberta",)
    aliases = {"roberta-base": "FacebookAI/roberta-base", "roberta-large": "FacebookAI/roberta-large"}
    special_positions = (2, 4)
    prefix_space_for_words = True
    computes_needed_tokens = True  # ELECTRA and XLM-R inherit it
    tiny_config = {"max_position_embeddings": 162, "type_vocab_size": 1}
    tiny_tokenizer = "bpe-pair-sep"

    def max_length(self, config):
        # positions start after the padding index
        return config.max_position_embeddings - (config.pad_token_id or 0) - 1

    def linear_sequence_head(self, model, task):
        conf = model.config
        model.classifier = LinearOnFirstToken(
            conf.hidden_size, task.num_labels, conf.hidden_dropout_prob, conf.initializer_range
        )
        return [n for n, _ in model.named_parameters() if n.startswith("classifier.")]
