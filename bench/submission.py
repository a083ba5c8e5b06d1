"""What makes a GLUE test-server submission complete, beyond one model's predictions: WNLI answered as the
GLUE baselines answer it (the training set's majority class: every model of the GLUE paper stays at or
below it), and the list of files the server expects."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from bench.data import tsv_rows
from bench.errors import BenchError

# The server's files: one per GLUE task (MNLI twice), AX (the diagnostic set, from the MNLI model) and WNLI.
EXPECTED = (
    "AX.tsv",
    "CoLA.tsv",
    "MNLI-m.tsv",
    "MNLI-mm.tsv",
    "MRPC.tsv",
    "QNLI.tsv",
    "QQP.tsv",
    "RTE.tsv",
    "SST-2.tsv",
    "STS-B.tsv",
    "WNLI.tsv",
)


def _wnli_dir(data_dir: str) -> Path:
    root = Path(data_dir)
    for cand in (root, root / "WNLI", root / "glue" / "WNLI"):
        if (cand / "train.tsv").is_file() and (cand / "test.tsv").is_file():
            return cand
    raise BenchError(f"no WNLI train.tsv and test.tsv in {root}, {root / 'WNLI'} or {root / 'glue' / 'WNLI'}")


def write_wnli_majority(data_dir: str, out_dir: Path, echo=print) -> Path:
    """WNLI.tsv: the majority label of WNLI's training set for every test index."""
    where = _wnli_dir(data_dir)
    train, test = (tsv_rows(where / f) for f in ("train.tsv", "test.tsv"))
    for name, rows, need in (("train.tsv", train, ("label",)), ("test.tsv", test, ("index",))):
        if not rows or any(c not in rows[0] for c in need):
            raise BenchError(
                f"{where / name}: no {', '.join(need)} column (header: {', '.join(rows[0] if rows else [])})"
            )
    labels = Counter(r[train[0].index("label")] for r in train[1:] if r)
    majority, count = labels.most_common(1)[0]
    at = test[0].index("index")
    path = out_dir / "WNLI.tsv"
    tmp = path.with_suffix(".tsv.tmp")
    tmp.write_text("index\tprediction\n" + "".join(f"{r[at]}\t{majority}\n" for r in test[1:] if r))
    tmp.replace(path)
    echo(
        f"WNLI.tsv: label {majority} (the training majority, {count} of {sum(labels.values())}) for "
        f"{sum(1 for r in test[1:] if r)} test pairs, as GLUE's baselines answer WNLI -> {path}"
    )
    return path


def missing(out_dir: Path) -> list[str]:
    """The server's files not yet in `out_dir`."""
    return [name for name in EXPECTED if not (out_dir / name).is_file()]
