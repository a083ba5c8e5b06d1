"""XLM-RoBERTa (Conneau et al. 2020): RoBERTa's architecture with a 250k SentencePiece vocabulary."""

from bench.families import register
from bench.families.roberta import Roberta


@register
class XlmRoberta(Roberta):
    name = "xlm-roberta"
    model_types = ("xlm-roberta",)
    aliases = {
        "xlm-roberta-base": "FacebookAI/xlm-roberta-base",
        "xlm-roberta-large": "FacebookAI/xlm-roberta-large",
    }
    prefix_space_for_words = False  # SentencePiece marks word starts itself
