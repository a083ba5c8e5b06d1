"""Shared fixtures: a tiny model and tokenizer of every encoder family built locally (no hub), small GLUE and
CoNLL files with the quirks of the real ones, and an isolated MLflow store per test."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


import pytest  # noqa: E402

from support import build_tiny_model, seeded_store, sentence, write_tsv  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A tiny model of every registered family, by family name."""
    from bench.families import families

    root = tmp_path_factory.mktemp("models")
    return {name: str(build_tiny_model(root / f"tiny-{name}", fam)) for name, fam in families().items()}


@pytest.fixture(scope="session")
def glue_dir(tmp_path_factory):
    """Small task directories in the original GLUE/CoNLL layouts, quirks included."""
    root = tmp_path_factory.mktemp("glue")
    n = 24
    for split, size in (("train", n), ("dev", 12)):
        write_tsv(
            root / "RTE" / f"{split}.tsv",
            [("index", "sentence1", "sentence2", "label")]
            + [
                (i, sentence(i), sentence(i + 1) + ' "quoted', ["entailment", "not_entailment"][i % 2])
                for i in range(size)
            ],
        )
        write_tsv(
            root / "CoLA" / f"{split}.tsv",
            [("gj04", i % 2, "*" if i % 2 == 0 else "", sentence(i)) for i in range(size)],
        )
        write_tsv(
            root / "MRPC" / f"{split}.tsv",
            [("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")]
            + [(i % 2, 100 + i, 200 + i, sentence(i), sentence(i + 2)) for i in range(size)],
            bom=True,
        )
        write_tsv(
            root / "STS-B" / f"{split}.tsv",
            [
                (
                    "index",
                    "genre",
                    "filename",
                    "year",
                    "old_index",
                    "source1",
                    "source2",
                    "sentence1",
                    "sentence2",
                    "score",
                )
            ]
            + [
                (
                    i,
                    "main",
                    "f",
                    "2012",
                    i,
                    "none",
                    "none",
                    sentence(i),
                    sentence(i + 3),
                    f"{(i * 0.37) % 5:.3f}",
                )
                for i in range(size)
            ],
        )
        write_tsv(
            root / "SST-2" / f"{split}.tsv",
            [("sentence", "label")] + [(sentence(i), i % 2) for i in range(size)],
        )
    # Unlabelled test files, as GLUE ships them: an index column, the texts, no label.
    write_tsv(
        root / "RTE" / "test.tsv",
        [("index", "sentence1", "sentence2")] + [(i, sentence(i), sentence(i + 2)) for i in range(7)],
    )
    write_tsv(
        root / "STS-B" / "test.tsv",
        [("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2")]
        + [(i, "main", "f", "2012", i, "none", "none", sentence(i), sentence(i + 4)) for i in range(5)],
    )
    for name in ("test_matched", "test_mismatched"):
        write_tsv(
            root / "MNLI" / f"{name}.tsv",
            [
                (
                    "index",
                    "promptID",
                    "pairID",
                    "genre",
                    "sentence1_binary_parse",
                    "sentence2_binary_parse",
                    "sentence1_parse",
                    "sentence2_parse",
                    "sentence1",
                    "sentence2",
                )
            ]
            + [
                (i, i, f"{i}e", "fiction", "(", "(", "(", "(", sentence(i), sentence(i + 3)) for i in range(4)
            ],
        )
    mnli_head = (
        "index",
        "promptID",
        "pairID",
        "genre",
        "sentence1_binary_parse",
        "sentence2_binary_parse",
        "sentence1_parse",
        "sentence2_parse",
        "sentence1",
        "sentence2",
        "label1",
        "gold_label",
    )
    labels = ["entailment", "neutral", "contradiction"]
    for name, size in (("train", n), ("dev_matched", 9), ("dev_mismatched", 9)):
        write_tsv(
            root / "MNLI" / f"{name}.tsv",
            [mnli_head]
            + [
                (
                    i,
                    i,
                    f"{i}e",
                    "fiction",
                    "(",
                    "(",
                    "(",
                    "(",
                    sentence(i),
                    sentence(i + 5),
                    labels[i % 3],
                    labels[i % 3],
                )
                for i in range(size)
            ],
        )
    tags = ["I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "O", "I-ORG", "I-MISC"]
    for split, size, docstart in (
        ("train", n, "-DOCSTART- -X- O O"),
        ("dev", 10, "-DOCSTART- -X- O O"),
        ("test", 6, "-DOCSTART- -X- -X- O"),
    ):
        lines = [docstart, ""]
        for i in range(size):
            words = sentence(i).split()
            lines += [f"{w} NN I-NP {tags[(i + j) % len(tags)]}" for j, w in enumerate(words)] + [""]
        (root / "conll2003").mkdir(exist_ok=True)
        (root / "conll2003" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def tracking_uri(tmp_path):
    return seeded_store(tmp_path / "mlflow.db")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
