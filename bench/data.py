"""Examples from three sources behind one function: the Hugging Face hub (default), a local GLUE
directory in the original TSV layout, and local CoNLL-2003 column files."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError, first_line
from bench.tasks import Task


@dataclass
class Examples:
    """One split: texts[i] is (a,) or (a, b) for sentence tasks, a word list for tagging."""

    texts: list
    labels: list  # int class index | float score | list of BIO tag indices
    source: str  # where it came from (file path or hub id)
    fingerprint: str  # changes whenever the content does: keys the tokenisation cache
    ids: list | None = None  # unlabelled splits: each example's index, as the GLUE server wants it back


def load_examples(task: Task, split: str, data_dir: str | None = None) -> Examples:
    """Read `split` of `task` from `data_dir` if given, else from the Hugging Face hub."""
    if split not in task.splits:
        raise BenchError(f"task {task.name} has no split {split!r} (choices: {', '.join(task.splits)})")
    if data_dir is None:
        ex = _from_hub(task, split)
    else:
        path = find_split_file(task, split, data_dir)
        ex = READERS[task.local.format](task, path)
    if not ex.texts:
        raise BenchError(f"split {split!r} of {task.name} is empty ({ex.source})")
    return ex


def task_dir(task: Task, data_dir: str) -> Path:
    """`data_dir` may be the task's own directory, the GLUE root, or a root holding glue/."""
    root = Path(data_dir)
    if not root.is_dir():
        raise BenchError(f"data directory not found: {data_dir}")
    sub = task.local.dir
    names = [n for accepted in task.local.splits.values() for n in accepted]
    for cand in (root, root / sub, root / "glue" / sub):
        if any((cand / f).is_file() for f in names):
            return cand
    raise BenchError(
        f"no {task.name} files ({', '.join(names)}) in {root}, {root / sub} or {root / 'glue' / sub}"
    )


def find_split_file(task: Task, split: str, data_dir: str) -> Path:
    """The first of the split's accepted file names present (CoNLL: train.txt or eng.train)."""
    d = task_dir(task, data_dir)
    for name in task.local.splits[split]:
        if (d / name).is_file():
            return d / name
    raise BenchError(f"missing {split} file for {task.name}: {d / task.local.splits[split][0]}")


def _file_fingerprint(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _label_index(task: Task, value: str, where: str):
    return task.task_kind.label_index(task, value, where)


def tsv_rows(path: Path) -> list[list[str]]:
    """GLUE TSVs are not CSV-quoted (stray quote characters abound): QUOTE_NONE keeps them verbatim;
    utf-8-sig drops MRPC's byte-order mark. A file that is not UTF-8 text is a one-line error."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except UnicodeDecodeError as e:
        raise BenchError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except (csv.Error, OSError) as e:
        raise BenchError(f"{path}: not readable as TSV ({first_line(e)})") from None


def _read_glue_tsv(task: Task, path: Path) -> Examples:
    rows = tsv_rows(path)
    start = 0
    src = task.local
    if src.headerless:
        cols = [*src.text, src.label]
    else:
        if not rows:
            raise BenchError(f"split file is empty: {path}")
        header, start = rows[0], 1
        missing = [c for c in (*src.text, src.label) if c not in header]
        if missing:
            raise BenchError(f"{path}: missing column {missing[0]!r} (header: {', '.join(header)})")
        cols = [header.index(c) for c in (*src.text, src.label)]
    texts, labels = [], []
    need = max(cols) + 1
    for lineno, row in enumerate(rows[start:], start=start + 1):
        if not row:
            continue
        if len(row) < need:
            raise BenchError(f"{path}:{lineno}: {len(row)} columns, expected at least {need}")
        *text_cols, label_col = cols
        texts.append(tuple(row[c] for c in text_cols))
        labels.append(_label_index(task, row[label_col].strip(), f"{path}:{lineno}"))
    return Examples(texts, labels, str(path), _file_fingerprint(path))


def iob1_to_bio(tags: list[str]) -> list[str]:
    """IOB1 (an entity starts with I- unless it follows one of the same type) to BIO/IOB2.

    Our own five lines: seqeval scores BIO but does not convert between schemes."""
    out, prev = [], "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


def _read_conll(task: Task, path: Path) -> Examples:
    """CoNLL-2003 columns `token POS chunk NER`; blank lines end sentences; -DOCSTART- lines dropped
    whatever their other columns say (test.txt spells them `-DOCSTART- -X- -X- O`)."""
    sentences, tags, words, raw = [], [], [], []
    lineno_of_sentence = []

    def flush(lineno):
        if words:
            sentences.append(list(words))
            tags.append(list(raw))
            lineno_of_sentence.append(lineno)
            words.clear()
            raw.clear()

    lineno = 0
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                fields = line.split()
                if not fields:
                    flush(lineno)
                    continue
                if fields[0] == "-DOCSTART-":
                    flush(lineno)
                    continue
                if len(fields) < 2:
                    raise BenchError(f"{path}:{lineno}: expected `token ... tag`, got {line.strip()[:80]!r}")
                words.append(fields[0])
                raw.append(fields[-1])
    except UnicodeDecodeError as e:
        raise BenchError(f"{path}: not UTF-8 text (after line {lineno}, byte {e.start})") from None
    flush(lineno)
    labels = []
    for sent_tags, lineno in zip(tags, lineno_of_sentence, strict=True):
        bio = iob1_to_bio(sent_tags)
        labels.append([_label_index(task, t, f"{path}: sentence ending line {lineno}") for t in bio])
    return Examples(sentences, labels, str(path), _file_fingerprint(path))


def _hub_split(task: Task, split: str, hub_split: str):
    """One split of the task's hub dataset, or a one-line error (offline, unknown revision, auth...)."""
    try:
        import datasets  # lazy: only the hub path reads through datasets (seconds to import)

        config, _, name = hub_split.rpartition(":")  # "ax:test": a split of another config of the dataset
        return datasets.load_dataset(task.hub.dataset, config or task.hub.config, split=name)
    except Exception as e:  # noqa: BLE001 - any failure: one line for the user
        raise BenchError(
            f"could not load {task.name}/{split} from the Hugging Face hub ({first_line(e)}); "
            f"pass --data-dir with the local files"
        ) from None


def _from_hub(task: Task, split: str) -> Examples:
    hub = task.hub
    ds = _hub_split(task, split, hub.splits[split])
    source = f"hf:{hub.dataset}{'/' + hub.config if hub.config else ''}/{hub.splits[split]}"
    if task.layout == "words":
        texts = [list(t) for t in ds[hub.text[0]]]
        labels = [list(t) for t in ds[hub.label]]
    else:
        texts = list(zip(*(ds[c] for c in hub.text), strict=True))
        labels = task.task_kind.hub_labels(ds[hub.label])
        if task.labels and any(lab < 0 for lab in labels):  # GLUE test splits carry -1
            raise BenchError(f"{source} has no labels")
    return Examples(texts, labels, source, f"{source}@{ds._fingerprint}")


READERS = {"tsv": _read_glue_tsv, "conll": _read_conll}  # task.local.format -> reader


def load_unlabelled(task: Task, split: str, data_dir: str | None = None) -> Examples:
    """An unlabelled split (GLUE test) for `bench predict`: texts and the index of each example; labels are
    placeholders (0) that nothing scores."""
    spec = task.predict
    if spec is None or split not in spec.files:
        known = ", ".join(spec.files) if spec else "none"
        raise BenchError(f"task {task.name} has no unlabelled split {split!r} to predict (choices: {known})")
    if data_dir is None:
        hub = task.hub
        ds = _hub_split(task, split, spec.hub[split])
        texts = list(zip(*(ds[c] for c in hub.text), strict=True))
        ids, source = list(ds["idx"]), f"hf:{hub.dataset}/{hub.config}/{spec.hub[split]}@{ds._fingerprint}"
    else:
        path = task_dir(task, data_dir) / spec.files[split]
        if not path.is_file():
            raise BenchError(f"missing {split} file for {task.name}: {path}")
        rows = [r for r in tsv_rows(path) if r]
        if not rows:
            raise BenchError(f"split file is empty: {path}")
        header = rows[0]
        missing = [c for c in (*spec.text, spec.index) if c not in header]
        if missing:
            raise BenchError(f"{path}: missing column {missing[0]!r} (header: {', '.join(header)})")
        cols = [header.index(c) for c in spec.text]
        at = header.index(spec.index)
        for lineno, row in enumerate(rows[1:], start=2):
            if len(row) < len(header):
                raise BenchError(f"{path}:{lineno}: {len(row)} columns, expected {len(header)}")
        texts = [tuple(r[c] for c in cols) for r in rows[1:]]
        ids, source = [r[at] for r in rows[1:]], f"{path}@{_file_fingerprint(path)}"
    if not texts:
        raise BenchError(f"split {split!r} of {task.name} is empty ({source})")
    placeholder = 0.0 if task.task_kind.float_labels else 0
    return Examples(texts, [placeholder] * len(texts), source, source, ids)
