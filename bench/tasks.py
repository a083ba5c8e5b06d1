"""Task registry: GLUE and CoNLL-2003 described as data.

Label lists follow the Hugging Face `nyu-mll/glue` / `eriktks/conll2003` ClassLabel order, so hub
integer labels and local TSV label strings map to the same index.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.errors import choices_error

CLASSIFICATION, REGRESSION, TAGGING = "classification", "regression", "tagging"


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # classification | regression | tagging
    labels: tuple[str, ...]  # empty for regression
    # Local GLUE TSV layout: column names (or 0-based indices for headerless files) of text fields
    # and label, and the file of each split.
    tsv_text: tuple[str | int, ...]
    tsv_label: str | int
    files: dict  # split -> file name in the task directory
    hub_config: str  # nyu-mll/glue config (or the dataset id for CoNLL)
    hub_text: tuple[str, ...]
    hub_splits: dict  # split -> hub split name
    metrics: tuple[str, ...]  # metric names logged per dev split
    main_metric: str  # picks the best epoch (on the first dev split); higher is better
    glue_score: tuple[str, ...]  # metrics averaged into the task's GLUE score
    headerless: bool = False
    description: str = ""

    @property
    def dev_splits(self) -> tuple[str, ...]:
        return tuple(s for s in self.files if s.startswith("dev"))

    @property
    def is_pair(self) -> bool:
        return len(self.tsv_text) == 2

    @property
    def num_labels(self) -> int:
        return 1 if self.kind == REGRESSION else len(self.labels)


_GLUE_SPLITS = {"train": "train.tsv", "dev": "dev.tsv"}
_HUB_SPLITS = {"train": "train", "dev": "validation"}
_BIO = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")


def _glue(name, text, label, labels, metrics, main, hub_text, hub_config=None, **kw) -> Task:
    kind = REGRESSION if not labels else CLASSIFICATION
    return Task(
        name=name, kind=kind, labels=tuple(labels), tsv_text=tuple(text), tsv_label=label,
        files=kw.pop("files", _GLUE_SPLITS), hub_config=hub_config or name, hub_text=tuple(hub_text),
        hub_splits=kw.pop("hub_splits", _HUB_SPLITS), metrics=tuple(metrics), main_metric=main,
        glue_score=kw.pop("glue_score", (main,)), **kw,
    )


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        _glue("rte", ["sentence1", "sentence2"], "label", ["entailment", "not_entailment"],
              ["accuracy"], "accuracy", ["sentence1", "sentence2"], description="textual entailment"),
        # CoLA's train/dev files have no header: source, label, original label, sentence.
        _glue("cola", [3], 1, ["0", "1"], ["mcc", "accuracy"], "mcc", ["sentence"], headerless=True,
              description="linguistic acceptability (Matthews corr.)"),
        _glue("stsb", ["sentence1", "sentence2"], "score", [], ["pearson", "spearman", "glue_score"],
              "glue_score", ["sentence1", "sentence2"], glue_score=("pearson", "spearman"),
              description="semantic similarity, regression 0-5"),
        _glue("mrpc", ["#1 String", "#2 String"], "Quality", ["0", "1"], ["f1", "accuracy", "glue_score"],
              "glue_score", ["sentence1", "sentence2"], glue_score=("f1", "accuracy"),
              description="paraphrase (F1 of class 1 and accuracy)"),
        _glue("sst2", ["sentence"], "label", ["0", "1"], ["accuracy"], "accuracy", ["sentence"],
              description="sentiment"),
        _glue("qnli", ["question", "sentence"], "label", ["entailment", "not_entailment"], ["accuracy"],
              "accuracy", ["question", "sentence"], description="question answering NLI"),
        _glue("mnli", ["sentence1", "sentence2"], "gold_label", ["entailment", "neutral", "contradiction"],
              ["accuracy"], "accuracy", ["premise", "hypothesis"],
              files={"train": "train.tsv", "dev_matched": "dev_matched.tsv",
                     "dev_mismatched": "dev_mismatched.tsv"},
              hub_splits={"train": "train", "dev_matched": "validation_matched",
                          "dev_mismatched": "validation_mismatched"},
              description="NLI; best epoch on matched dev, mismatched reported"),
        _glue("qqp", ["question1", "question2"], "is_duplicate", ["0", "1"], ["f1", "accuracy", "glue_score"],
              "glue_score", ["question1", "question2"], glue_score=("f1", "accuracy"),
              description="duplicate questions (F1 and accuracy)"),
        Task(name="conll2003", kind=TAGGING, labels=_BIO, tsv_text=("tokens",), tsv_label="ner_tags",
             files={"train": "train.txt", "dev": "dev.txt", "test": "test.txt"},
             hub_config="eriktks/conll2003", hub_text=("tokens",),
             hub_splits={"train": "train", "dev": "validation", "test": "test"},
             metrics=("f1", "precision", "recall", "accuracy"), main_metric="f1", glue_score=("f1",),
             description="NER, entity-level micro F1 (seqeval); IOB1 files converted to BIO"),
    ]
}

# Directory names of the original GLUE release, for --data-dir pointing at the GLUE root.
GLUE_DIRS = {"rte": "RTE", "cola": "CoLA", "stsb": "STS-B", "mrpc": "MRPC", "sst2": "SST-2",
             "qnli": "QNLI", "mnli": "MNLI", "qqp": "QQP", "conll2003": "conll2003"}
ALIASES = {"sts-b": "stsb", "sst-2": "sst2", "conll03": "conll2003", "ner": "conll2003"}


def get_task(name: str) -> Task:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in TASKS:
        raise choices_error("task", name, TASKS)
    return TASKS[key]
