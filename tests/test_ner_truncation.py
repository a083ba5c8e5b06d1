"""NER gold labels cover every word: words beyond max_length count as predicted O, so a tagger that is
perfect on what it sees still loses the entities the truncation cut off."""

import numpy as np

from bench.data import Examples
from bench.encoding import encode
from bench.kinds import IGNORE_INDEX
from bench.metrics import compute_metrics
from bench.tasks import get_task


def test_truncated_words_count_as_misses(tiny_models):
    from transformers import AutoTokenizer

    task = get_task("conll2003")
    tok = AutoTokenizer.from_pretrained(tiny_models["bert"])
    B, OUT = task.labels.index("B-PER"), task.labels.index("O")
    words = ["john", "sat", "on", "the", "mat", "in", "paris", "and", "london", "john", "ran"]
    tags = [B, OUT, OUT, OUT, OUT, OUT, B, OUT, B, B, OUT]  # 4 entities: john, paris, london, john
    tags[6] = task.labels.index("B-LOC")
    tags[8] = task.labels.index("B-LOC")
    short = Examples([words[:3]], [tags[:3]], "mem", "short")
    long = Examples([words], [tags], "mem", "long")
    for ex, max_length, expected_recall in ((short, 32, 1.0), (long, 32, 1.0), (long, 6, 0.25)):
        data = encode(task, ex, tok, max_length)
        # A perfect tagger on the tokens it sees: every first sub-token gets its gold tag.
        token_preds = [np.where(row == IGNORE_INDEX, OUT, row).tolist() for row in data["labels"]]
        preds = task.task_kind.finish(task, token_preds, data)
        assert [len(p) for p in preds] == [len(w) for w in ex.texts]  # one tag per word, every word
        m = compute_metrics(task, preds, task.task_kind.gold(data))
        assert m["recall"] == expected_recall and m["precision"] == 1.0


def test_a_word_without_sub_tokens_does_not_shift_the_others(tiny_models):
    """U+200B and a soft hyphen tokenise to nothing: the word is scored as O, and every later word keeps its
    own prediction (before, the later words' predictions moved one word to the left)."""
    from transformers import AutoTokenizer

    task = get_task("conll2003")
    tok = AutoTokenizer.from_pretrained(tiny_models["bert"])
    PER, LOC, OUT = (task.labels.index(t) for t in ("B-PER", "B-LOC", "O"))
    words = ["john", "\u200b", "sat", "in", "\u00ad", "paris"]
    assert tok.tokenize("\u200b") == [] and tok.tokenize("\u00ad") == []
    tags = [PER, LOC, OUT, OUT, PER, LOC]  # the empty words carry entities the model cannot see
    data = encode(task, Examples([words], [tags], "mem", "empty-words"), tok, 32)
    token_preds = [np.where(row == IGNORE_INDEX, OUT, row).tolist() for row in data["labels"]]
    (preds,) = task.task_kind.finish(task, token_preds, data)
    assert preds == [PER, OUT, OUT, OUT, OUT, LOC]  # john and paris in place; the empty words predicted O
    m = compute_metrics(task, [preds], task.task_kind.gold(data))
    assert m["precision"] == 1.0 and m["recall"] == 0.5  # 2 of the 4 gold entities are on empty words
