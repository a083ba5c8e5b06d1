"""Parameter-count tables (`bench params`, `bench report params`): the counts come from bench.param_table."""

from __future__ import annotations

from reports.render import render


def render_method_rows(rows: list[dict], task, fmt: str) -> str:
    header = ["model", "method", "method params", "% of backbone", "head", "trainable (+head)", "stored", "backbone"]
    body = [[r["model"], r["name"], f"{r['method']:,}", f"{r['percent']:.4f}%", f"{r['head']:,}", f"{r['trainable']:,}",
             f"{r['stored']:,}", f"{r['backbone']:,}"] for r in rows]
    caption = (f"Parameters per method on {task.name} ({'pair' if task.is_pair else 'single'} input, "
               f"{task.num_labels}-output head), each method at its default configuration. method params: the "
               "method's own, head excluded (the papers' %Param numerator); backbone: the pretrained encoder as "
               "loaded for this task head (BERT with pooler, RoBERTa without); stored: adapter checkpoint.")
    return render(header, body, fmt, caption)


def render_published(rows: list[dict], fmt: str) -> str:
    header = ["method", "model", "published", "ours: method params", "ours: %", "backbone", "configuration",
              "note"]
    body = [[r["name"], r["model"], r["published"], f"{r['method']:,}", f"{r['percent']:.4f}%",
             f"{r['backbone']:,}", r["config"], r["note"]] for r in rows]
    caption = ("Published %Param figures (METHODS.md) beside ours, counted on the architecture without weights. "
               "ours: % = method params / backbone as loaded for sequence classification.")
    return render(header, body, fmt, caption, align="lllrrrll")
