"""Shared fixtures: a tiny model and tokenizer of every encoder family built locally (no hub), small GLUE and
CoNLL files with the quirks of the real ones, and an isolated MLflow store per test."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WORDS = ("the a an cat dog bird sat ran flew on in under mat log tree is was not very good bad happy sad "
         "john paris london acme corp said that it this and or but new york times").split()


def _tokenizer(kind: str, directory: Path):
    """A real tokenizer of the family's kind, trained on WORDS: WordPiece with [CLS]/[SEP] (BERT, ELECTRA,
    DeBERTa's template), byte-level BPE with <s> a </s></s> b </s> (RoBERTa, XLM-R's template), or byte-level
    BPE with [CLS]/[SEP] and no token types (ModernBERT)."""
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import BertTokenizer, PreTrainedTokenizerFast, RobertaTokenizer

    if kind == "wordpiece":
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz",
                 *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"), ".", ",", "'", '"', "-"]
        return BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    bpe = ByteLevelBPETokenizer()
    if kind == "bpe-pair-sep":
        bpe.train_from_iterator([" ".join(WORDS)] * 20, vocab_size=400, min_frequency=1,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        vocab_file, merges_file = bpe.save_model(str(directory))
        return RobertaTokenizer(vocab=vocab_file, merges=merges_file)
    assert kind == "bpe-cls", kind
    bpe.train_from_iterator([" ".join(WORDS)] * 20, vocab_size=400, min_frequency=1,
                            special_tokens=["[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"])
    cls, sep = bpe.token_to_id("[CLS]"), bpe.token_to_id("[SEP]")
    bpe.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                            special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, cls_token="[CLS]", sep_token="[SEP]",
                                   pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "attention_mask"])


def build_tiny_model(directory: Path, family) -> Path:
    """A 2-layer, hidden-32 encoder of the family (a bench.families.Family, or its name) with a real tokenizer
    of the family's kind, saved like a hub model."""
    import torch
    from transformers import AutoConfig, AutoModel

    from bench.families import families

    fam = families()[family] if isinstance(family, str) else family
    torch.manual_seed(0)
    directory.mkdir(parents=True, exist_ok=True)
    tok = _tokenizer(fam.tiny_tokenizer, directory)
    ids = {f"{name}_token_id": tok.convert_tokens_to_ids(getattr(tok, f"{name}_token"))
           for name in ("pad", "bos", "eos", "cls", "sep") if getattr(tok, f"{name}_token", None)}
    defaults = AutoConfig.for_model(fam.model_types[0])
    dropouts = {k: 0.1 for k in ("hidden_dropout_prob", "attention_probs_dropout_prob") if hasattr(defaults, k)}
    config = AutoConfig.for_model(
        fam.model_types[0], vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, **(dropouts | ids | fam.tiny_config))
    model = AutoModel.from_config(config)
    tok.model_max_length = 128
    tok.save_pretrained(directory)
    model.save_pretrained(directory)
    return directory



@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A tiny model of every registered family, by family name."""
    from bench.families import families

    root = tmp_path_factory.mktemp("models")
    return {name: str(build_tiny_model(root / f"tiny-{name}", fam)) for name, fam in families().items()}


def _tsv(path: Path, rows, bom=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join("\t".join(map(str, r)) for r in rows) + "\n"
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")


def sentence(i: int) -> str:
    return " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(3 + i % 6))


@pytest.fixture(scope="session")
def glue_dir(tmp_path_factory):
    """Small task directories in the original GLUE/CoNLL layouts, quirks included."""
    root = tmp_path_factory.mktemp("glue")
    n = 24
    for split, size in (("train", n), ("dev", 12)):
        _tsv(root / "RTE" / f"{split}.tsv", [("index", "sentence1", "sentence2", "label")] + [
            (i, sentence(i), sentence(i + 1) + ' "quoted', ["entailment", "not_entailment"][i % 2])
            for i in range(size)])
        _tsv(root / "CoLA" / f"{split}.tsv", [("gj04", i % 2, "*" if i % 2 == 0 else "", sentence(i))
                                             for i in range(size)])
        _tsv(root / "MRPC" / f"{split}.tsv", [("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")] + [
            (i % 2, 100 + i, 200 + i, sentence(i), sentence(i + 2)) for i in range(size)], bom=True)
        _tsv(root / "STS-B" / f"{split}.tsv", [("index", "genre", "filename", "year", "old_index", "source1",
                                                "source2", "sentence1", "sentence2", "score")] + [
            (i, "main", "f", "2012", i, "none", "none", sentence(i), sentence(i + 3), f"{(i * 0.37) % 5:.3f}")
            for i in range(size)])
        _tsv(root / "SST-2" / f"{split}.tsv", [("sentence", "label")] + [(sentence(i), i % 2) for i in range(size)])
    # Unlabelled test files, as GLUE ships them: an index column, the texts, no label.
    _tsv(root / "RTE" / "test.tsv", [("index", "sentence1", "sentence2")] + [(i, sentence(i), sentence(i + 2))
                                                                            for i in range(7)])
    _tsv(root / "STS-B" / "test.tsv", [("index", "genre", "filename", "year", "old_index", "source1", "source2",
                                        "sentence1", "sentence2")] + [(i, "main", "f", "2012", i, "none", "none",
                                                                       sentence(i), sentence(i + 4)) for i in range(5)])
    for name in ("test_matched", "test_mismatched"):
        _tsv(root / "MNLI" / f"{name}.tsv", [("index", "promptID", "pairID", "genre", "sentence1_binary_parse",
                                              "sentence2_binary_parse", "sentence1_parse", "sentence2_parse",
                                              "sentence1", "sentence2")] + [
            (i, i, f"{i}e", "fiction", "(", "(", "(", "(", sentence(i), sentence(i + 3)) for i in range(4)])
    mnli_head = ("index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                 "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label")
    labels = ["entailment", "neutral", "contradiction"]
    for name, size in (("train", n), ("dev_matched", 9), ("dev_mismatched", 9)):
        _tsv(root / "MNLI" / f"{name}.tsv", [mnli_head] + [
            (i, i, f"{i}e", "fiction", "(", "(", "(", "(", sentence(i), sentence(i + 5), labels[i % 3],
             labels[i % 3]) for i in range(size)])
    tags = ["I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "O", "I-ORG", "I-MISC"]
    for split, size, docstart in (("train", n, "-DOCSTART- -X- O O"), ("dev", 10, "-DOCSTART- -X- O O"),
                                  ("test", 6, "-DOCSTART- -X- -X- O")):
        lines = [docstart, ""]
        for i in range(size):
            words = sentence(i).split()
            lines += [f"{w} NN I-NP {tags[(i + j) % len(tags)]}" for j, w in enumerate(words)] + [""]
        (root / "conll2003").mkdir(exist_ok=True)
        (root / "conll2003" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def tracking_uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def all_runs(uri):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    exps = [e.experiment_id for e in c.search_experiments()]
    return c.search_runs(exps) if exps else []
