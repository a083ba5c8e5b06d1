import numpy as np
import pytest

from bench.data import load_examples
from bench.encoding import IGNORE_INDEX, cached_encode, encode
from bench.errors import BenchError
from bench.tasks import get_task


def test_glue_readers_handle_each_quirk(glue_dir):
    cola = load_examples(get_task("cola"), "train", str(glue_dir))  # headerless
    assert cola.texts[0] == (cola.texts[0][0],) and cola.labels[:2] == [0, 1]
    mrpc = load_examples(get_task("mrpc"), "dev", str(glue_dir / "MRPC"))  # BOM before "Quality"
    assert len(mrpc.texts) == 12 and len(mrpc.texts[0]) == 2
    rte = load_examples(get_task("rte"), "train", str(glue_dir))  # stray quote kept verbatim
    assert rte.texts[0][1].endswith(' "quoted') and len(rte.texts) == 24
    mnli = get_task("mnli")
    assert mnli.dev_splits == ("dev_matched", "dev_mismatched")
    assert len(load_examples(mnli, "dev_mismatched", str(glue_dir)).labels) == 9
    stsb = load_examples(get_task("stsb"), "train", str(glue_dir))
    assert isinstance(stsb.labels[1], float)


def test_conll_reader_drops_docstart_and_converts_iob1(glue_dir):
    task = get_task("conll2003")
    test = load_examples(task, "test", str(glue_dir))  # -DOCSTART- -X- -X- O spelling
    assert len(test.texts) == 6 and "-DOCSTART-" not in test.texts[0]
    train = load_examples(task, "train", str(glue_dir))
    first = [task.labels[i] for i in train.labels[0]]
    assert first[0] == "B-PER"  # IOB1 I-PER at sentence start becomes B-PER
    assert "I-LOC" in [task.labels[i] for s in train.labels for i in s]


def test_conll_real_file_counts():
    from support import SHARED_DATA

    if not (SHARED_DATA / "conll2003" / "dev.txt").is_file():
        pytest.skip("shared CoNLL-2003 data absent")
    dev = load_examples(get_task("conll2003"), "dev", str(SHARED_DATA))
    assert len(dev.texts) == 3250 and sum(map(len, dev.texts)) == 51362


def _write(path, text, bom=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("\ufeff" if bom else "") + text)


@pytest.mark.parametrize(
    "content, message",
    [
        ("index\tsentence1\tlabel\n0\ta\tentailment\n", "missing column 'sentence2'"),
        ("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n", "label 'maybe' is not a rte label"),
        ("index\tsentence1\tsentence2\tlabel\n", "is empty"),
        ("", "is empty"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path, content, message):
    _write(tmp_path / "RTE" / "train.tsv", content)
    with pytest.raises(BenchError, match=message):
        load_examples(get_task("rte"), "train", str(tmp_path))


def test_missing_directory_and_split_file(tmp_path):
    with pytest.raises(BenchError, match="data directory not found"):
        load_examples(get_task("rte"), "train", str(tmp_path / "nope"))
    _write(tmp_path / "RTE" / "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(BenchError, match="missing dev file"):
        load_examples(get_task("rte"), "dev", str(tmp_path))


def test_first_subtoken_labelled_only(tiny_models, glue_dir):
    from transformers import AutoTokenizer

    task = get_task("conll2003")
    tok = AutoTokenizer.from_pretrained(tiny_models["bert"])
    ex = load_examples(task, "dev", str(glue_dir))
    ex.texts[0] = ["zzyzx", *ex.texts[0][1:]]  # an out-of-vocabulary word splits into several pieces
    enc = encode(task, ex, tok, 64)
    word_ids = tok(ex.texts[0], is_split_into_words=True).word_ids()
    labels = enc["labels"][0]
    assert labels[0] == IGNORE_INDEX and labels[-1] == IGNORE_INDEX  # [CLS], [SEP]
    assert word_ids[1] == word_ids[2] == 0 and labels[1] == ex.labels[0][0] and labels[2] == IGNORE_INDEX
    assert sum(lab != IGNORE_INDEX for lab in labels) == len(ex.texts[0])


def test_tokenisation_cache_hit_returns_same_data(tiny_models, glue_dir, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    import bench.encoding as enc_mod

    task = get_task("rte")
    tok = AutoTokenizer.from_pretrained(tiny_models["bert"])
    ex = load_examples(task, "train", str(glue_dir))
    first = cached_encode(task, "train", ex, tok, 64, tmp_path)
    monkeypatch.setattr(enc_mod, "encode", lambda *a, **k: pytest.fail("cache missed"))
    again = cached_encode(task, "train", ex, tok, 64, tmp_path)
    assert again.keys() == first.keys() and again["input_ids"] == first["input_ids"]
    assert np.array_equal(again["labels"], first["labels"]) and again["labels"].dtype == first["labels"].dtype
    assert list(tmp_path.glob("encoded/rte-train-*.npz"))


def test_tokenizer_fingerprint_ignores_call_state_only(tiny_models):
    from transformers import AutoTokenizer

    from bench.encoding import tokenizer_fingerprint

    bert = AutoTokenizer.from_pretrained(tiny_models["bert"])
    used = AutoTokenizer.from_pretrained(tiny_models["bert"])
    used("a b", "c d", truncation=True, max_length=7, padding="max_length")  # leaves state in the backend
    assert tokenizer_fingerprint(bert) == tokenizer_fingerprint(used)
    assert tokenizer_fingerprint(bert) != tokenizer_fingerprint(
        AutoTokenizer.from_pretrained(tiny_models["roberta"])
    )


@pytest.mark.parametrize("task_name", ["mrpc", "stsb", "conll2003"])
def test_collate_matches_the_tokenizers_own_padding(tiny_models, glue_dir, tmp_path, task_name):
    from transformers import AutoTokenizer

    from bench.batching import collate

    task = get_task(task_name)
    tok = AutoTokenizer.from_pretrained(tiny_models["bert"])
    ex = load_examples(task, "train", str(glue_dir))
    cached_encode(task, "train", ex, tok, 16, tmp_path)
    data = cached_encode(task, "train", ex, tok, 16, tmp_path)  # from the cache
    rows = [5, 0, 3]
    batch = collate(data, rows, tok.pad_token_id, float_labels=task_name == "stsb")
    if task.kind == "tagging":
        ref = tok(
            [ex.texts[i] for i in rows],
            is_split_into_words=True,
            truncation=True,
            max_length=16,
            padding=True,
            return_tensors="pt",
        )
        first = data["labels"][rows[1]]
        assert batch["labels"][1, : len(first)].tolist() == first.tolist()
        assert (batch["labels"][1, len(first) :] == IGNORE_INDEX).all()
    else:
        ref = tok(
            *zip(*[ex.texts[i] for i in rows], strict=True),
            truncation=True,
            max_length=16,
            padding=True,
            return_tensors="pt",
        )
        assert batch["labels"].tolist() == pytest.approx([ex.labels[i] for i in rows])
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert batch[key].tolist() == ref[key].tolist(), key


def test_eval_batches_cover_every_row_once_within_the_token_budget():
    import random

    from bench.batching import sorted_batches

    rng = random.Random(0)
    lengths = [rng.randint(1, 128) for _ in range(500)]
    for max_tokens in (None, 1024, 64, 1):
        batches = sorted_batches(lengths, 32, max_tokens)
        assert sorted(i for b in batches for i in b) == list(range(500))
        assert all(1 <= len(b) <= 32 for b in batches)
        flat = [lengths[i] for b in batches for i in b]
        assert flat == sorted(flat, reverse=True)
        if max_tokens:  # a single row longer than the budget still gets its own batch
            assert all(len(b) == 1 or len(b) * max(lengths[i] for i in b) <= max_tokens for b in batches)
    assert len(sorted_batches(lengths, 32, 1024)) > len(sorted_batches(lengths, 32))


def test_buffer100_order_is_bert_tf_shuffle_buffer():
    """batch_order=buffer100: tf.data's shuffle(buffer_size=100) over the file order. Its defining
    properties, written here: every example once; the example at output position i comes from the first
    i + 100 of the file; the first output is uniform over the first 100 (checked over many draws)."""
    import collections

    import torch

    from bench.batching import training_batches

    n, size = 1000, 32
    batches = training_batches("buffer100", [5] * n, size, torch.Generator().manual_seed(0))
    order = [i for b in batches for i in b]
    assert sorted(order) == list(range(n)) and all(len(b) == size for b in batches[:-1])
    assert all(index < position + 100 for position, index in enumerate(order))
    assert order != sorted(order)
    firsts = collections.Counter(
        training_batches("buffer100", [5] * 300, 8, torch.Generator().manual_seed(s))[0][0]
        for s in range(1000)
    )
    assert set(firsts) <= set(range(100)) and len(firsts) > 90 and max(firsts.values()) < 3 * 1000 / 100
    uniform = [
        i for b in training_batches("uniform", [5] * n, size, torch.Generator().manual_seed(0)) for i in b
    ]
    assert any(index >= position + 100 for position, index in enumerate(uniform))  # the bound is not trivial
