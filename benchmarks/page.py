"""The performance page `bench perf --markdown PAGE` keeps: one section per measured configuration (model,
task, init, batch), replaced by a new measurement of the same configuration and kept otherwise, each stamped
with its date, machine, load and matmul peak; every target's value also appended, dated, to the history CSV
beside the page (PAGE with .csv: `performance.md` -> `performance-history.csv`). The hand-written reading of
the missed targets stays between its markers."""

from __future__ import annotations

import csv
import re
from pathlib import Path

HEADER = """# Performance: bench's loop against the HF Trainer

`bench perf` runs bench's training loop and the Hugging Face Trainer side by side on the same model, method,
task, hyperparameters, batch and steps, alternating the variants, in fresh processes, and prints medians:
epoch time, throughput, memory, each method against full fine-tuning and against its own Trainer(+peft)
reference, FLOP/s against a matmul peak measured in the same run, and the targets
(`benchmarks/targets.yaml`) each figure meets or misses. This page is written by
`bench perf ... --markdown docs/performance.md`: each section below is the latest measurement of one
configuration, with its date, machine and load; earlier measurements are rows of
[performance-history.csv](performance-history.csv).
"""

READING_START, READING_END = "<!-- reading -->", "<!-- /reading -->"
SECTION = re.compile(r"<!-- section: (?P<key>.+?) -->\n(?P<body>.*?)<!-- /section -->\n", re.S)
HISTORY_FIELDS = [
    "date",
    "machine",
    "load",
    "matmul_peak",
    "configuration",
    "target",
    "measured",
    "goal",
    "status",
]


def history_path(page: Path) -> Path:
    return page.with_name(page.stem + "-history.csv")


def upsert(page: Path, key: str, body: str) -> None:
    """Write `body` as the section `key` of the page (replacing that configuration's older section), keeping
    the reading and every other section; the file is replaced whole, never left half-written."""
    text = page.read_text() if page.exists() else ""
    sections = {m["key"]: m["body"] for m in SECTION.finditer(text)}
    sections[key] = body.rstrip("\n") + "\n"
    start, end = text.find(READING_START), text.find(READING_END)
    reading = text[start : end + len(READING_END)] if 0 <= start < end else f"{READING_START}\n{READING_END}"
    out = HEADER + "\n## Reading of the missed targets\n\n" + reading + "\n\n"
    out += "".join(f"<!-- section: {k} -->\n{sections[k]}<!-- /section -->\n\n" for k in sorted(sections))
    page.parent.mkdir(parents=True, exist_ok=True)
    tmp = page.with_name(page.name + ".tmp")
    tmp.write_text(out.rstrip("\n") + "\n")
    tmp.replace(page)


def append_history(page: Path, stamp: dict, configuration: str, targets: list[list[str]]) -> None:
    """One dated row per target (target, measured, goal, status as the Targets table prints them)."""
    path = history_path(page)
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, HISTORY_FIELDS, lineterminator="\n")
        if new:
            w.writeheader()
        for target, measured, goal, status in targets:
            w.writerow(
                {**stamp, "configuration": configuration, "target": target, "measured": measured}
                | {"goal": goal, "status": status}
            )
