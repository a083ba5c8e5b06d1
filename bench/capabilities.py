"""The capability matrix: which method works on which encoder family for which kind of task, found by trying
it. Each cell builds a 2-layer, 32-wide model of the family from its config (no download, random weights),
attaches the method at its probe sizes as a run would, and takes a forward and backward pass; a cell works
when the loss is finite and a gradient reaches what the method trains. A refusal is the method's own one-line
reason (bench refuses such runs before anything is created); anything else is a failure, named."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from transformers import AutoConfig

from bench.errors import BenchError, first_line
from bench.families import families
from bench.logs import quiet_libraries
from bench.models import head_kwargs, model_class
from bench.tasks import KINDS, all_tasks
from methods import REGISTRY, AttachContext
from methods.base import apply_method

WORKS, REFUSED, FAILS = "works", "refused", "fails"
LENGTH, BATCH, VOCAB = 12, 2, 64


@dataclass(frozen=True)
class Cell:
    method: str
    family: str
    kind: str
    outcome: str  # works | refused | fails
    reason: str = ""


def representative_tasks() -> dict:
    """One task per kind (the first of each in bench's task list): the matrix is per kind, not per task."""
    out = {}
    for task in all_tasks().values():
        out.setdefault(task.kind, task)
    return {kind: out[kind] for kind in KINDS if kind in out}


def tiny_config(family, task):
    ids = {f"{k}_token_id": i for i, k in enumerate(("pad", "bos", "eos", "cls", "sep"))}
    return AutoConfig.for_model(
        family.model_types[0],
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        **(family.tiny_config | ids | head_kwargs(task)),
    )


def batch(task, method) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, VOCAB, (BATCH, LENGTH), generator=g)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if task.kind == "tagging":
        out["labels"] = torch.randint(0, task.num_labels, (BATCH, LENGTH), generator=g)
    elif task.kind == "regression":
        out["labels"] = torch.rand(BATCH, generator=g)
    else:
        out["labels"] = torch.randint(0, task.num_labels, (BATCH,), generator=g)
    if "special_tokens_mask" in method.batch_columns:
        mask = torch.zeros_like(ids)
        mask[:, 0] = mask[:, -1] = 1
        out["special_tokens_mask"] = mask
    return out


def probe(method_name: str, family_name: str, task) -> Cell:
    method, family = REGISTRY[method_name], families()[family_name]
    cell = lambda outcome, reason="": Cell(method_name, family_name, task.kind, outcome, reason)  # noqa: E731
    torch.manual_seed(0)
    config = tiny_config(family, task)
    try:
        cfg = method.make_config(method.probe_options())
        model = model_class(task).from_config(config)
        ctx = AttachContext(task=task, tokenizer=None, family=family, config=model.config)
        model, _ = apply_method(model, method, cfg, ctx)
    except BenchError as e:
        return cell(REFUSED, first_line(e))
    except Exception as e:  # noqa: BLE001 - what the matrix is for: a failure is a finding, named in the table
        return cell(FAILS, f"{type(e).__name__}: {first_line(e)}")
    try:
        model.train()
        loss = model(**batch(task, method)).loss
        if not math.isfinite(loss.item()):
            return cell(FAILS, f"loss {loss.item()}")
        if not loss.requires_grad:
            return cell(FAILS, "no gradient reaches the parameters it trains")
        loss.backward()
    except Exception as e:  # noqa: BLE001
        return cell(FAILS, f"{type(e).__name__}: {first_line(e)}")
    heads = model.bench_head_prefixes
    own = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(heads)]
    reached = own or [p for p in model.parameters() if p.requires_grad]  # head-only: the head
    if not any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in reached):
        return cell(FAILS, "no gradient reaches the parameters it trains")
    return cell(WORKS)


INTRO = """# Capabilities: which method works on which encoder family and task kind

Found by trying each one, not declared: `bench methods --matrix --write docs/capabilities.md` writes this
page (about 20 s on two CPU cores). Each cell builds a 2-layer, 32-wide model of the family from its
configuration, attaches the method as `bench run` would (at the small sizes tiny layers need: a tuner's
`probe` entry in methods/tuners/tuners.yaml) and takes a forward and backward pass; it works when the loss is
finite and a gradient reaches what the method trains. A refused cell is refused by `bench run` too, in one
line, before anything is created. The peft tuners (the rows after the hand-written methods) are attached with
peft's own tuner classes; their targets are roles each family maps to its modules (see docs/tuners.md).

"""


def matrix(methods: list[str] | None = None, family_names: list[str] | None = None) -> list[Cell]:
    quiet_libraries()
    tasks = representative_tasks()
    with warnings.catch_warnings():  # peft's notes on tiny layers (butterfly factors, sparse checks)
        warnings.simplefilter("ignore")
        return [
            probe(m, f, task)
            for m in methods or list(REGISTRY)
            for f in family_names or list(families())
            for task in tasks.values()
        ]


def render(cells: list[Cell], versions: str) -> str:
    """Markdown: a row per method, a column per family x kind; refusals and failures footnoted once each."""
    fams = list(dict.fromkeys(c.family for c in cells))
    kinds = list(dict.fromkeys(c.kind for c in cells))
    notes: dict[str, int] = {}
    by = {(c.method, c.family, c.kind): c for c in cells}
    short = {"classification": "cls", "regression": "reg", "tagging": "tag"}
    header = "| method | " + " | ".join(f"{f} {short.get(k, k)}" for f in fams for k in kinds) + " |"
    lines = [header, "|---|" + "---|" * (len(fams) * len(kinds))]
    for method in dict.fromkeys(c.method for c in cells):
        row = []
        for f in fams:
            for k in kinds:
                c = by[(method, f, k)]
                if c.outcome == WORKS:
                    row.append("✓")
                    continue
                n = notes.setdefault(f"{c.outcome}: {c.reason}", len(notes) + 1)
                row.append(f"{'✗' if c.outcome == REFUSED else '!'} [{n}]")
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    lines.append("")
    lines.append(
        "✓ works (forward and backward on a 2-layer, 32-wide model of the family, at the method's probe "
        "sizes); "
        "✗ refused before anything is built, with the reason below; ! fails, with the error below. "
        f"Tasks: {', '.join(f'{short.get(k, k)} = {k}' for k in kinds)}. {versions}"
    )
    lines.append("")
    lines += [f"[{n}] {text}" for text, n in notes.items()]
    return "\n".join(lines) + "\n"


def parse(text: str) -> dict[tuple[str, str, str], str]:
    """(method, family, kind) -> works | refused | fails, read back from a rendered matrix."""
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    header = [h.strip() for h in rows[0].strip("|").split("|")][1:]
    long = {"cls": "classification", "reg": "regression", "tag": "tagging"}
    columns = [(h.rsplit(" ", 1)[0], long.get(h.rsplit(" ", 1)[1], h.rsplit(" ", 1)[1])) for h in header]
    out = {}
    for line in rows[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for (family, kind), mark in zip(columns, cells[1:], strict=True):
            out[(cells[0], family, kind)] = (
                WORKS if mark == "✓" else REFUSED if mark.startswith("✗") else FAILS
            )
    return out
