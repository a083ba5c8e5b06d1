"""Parameter-count tables (`bench params`, `bench report params`): the counts come from bench.param_table."""

from __future__ import annotations

from methods import display_name
from reports.render import render
from reports.style import percent_text


def render_method_rows(rows: list[dict], task, fmt: str) -> str:
    header = ["model", "method", "method params", "%Param", "head", "trainable (+head)", "stored", "backbone"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    body = [
        [
            r["model"],
            display_name(r["name"]),
            f"{r['method']:,}",
            percent_text(r["percent"]),
            f"{r['head']:,}",
            f"{r['trainable']:,}",
            f"{r['stored']:,}",
            f"{r['backbone']:,}",
        ]
        if "refused" not in r
        else [r["model"], display_name(r["name"]), "refused", "-", "-", "-", "-", r["refused"]]
        for r in rows
    ]
    caption = (
        f"Parameters per method on {task.title} ({'pair' if task.is_pair else 'single'} input, "
        f"{task.num_labels}-output head), each method at its default configuration. method params: the "
        "method's own, head excluded (the papers' %Param numerator); %Param: method params as a percentage "
        "of the backbone, the pretrained encoder as loaded for this task head (embeddings included, and a "
        "pretrained pooler where the family's head uses one); stored: adapter checkpoint; refused: the "
        "method cannot apply to "
        "that family (why in the last column). Diff pruning: method params and %Param are the diff entries "
        "it ends with (its sparsity budget), trainable (+head) its dense diff and gates while training. "
        "SAID/DID: the head is inside the projected subspace, so trainable = d, below the head's own size."
    )
    align = "llrrrrrr"
    if len(models) == 1 and fmt not in ("csv", "json"):  # one model: said once, in the caption
        header, body, align = header[1:], [r[1:] for r in body], align[1:]
        caption = caption.replace("Parameters per method on", f"Parameters per method of {models[0]} on", 1)
    return render(
        header,
        body,
        fmt,
        caption,
        align=align,
        label=f"tab:params-{task.name}",
        json_rows=[
            {
                k: r[k]
                for k in (
                    "model",
                    "name",
                    "method",
                    "percent",
                    "head",
                    "trainable",
                    "stored",
                    "backbone",
                    "refused",
                )
                if k in r
            }
            for r in rows
        ],
    )


def render_published(rows: list[dict], fmt: str) -> str:
    header = [
        "method",
        "model",
        "published",
        "published %Param",
        "ours: method params",
        "ours: %Param",
        "backbone",
        "configuration",
        "note",
    ]
    body = [
        [
            display_name(r["name"]),
            r["model"],
            r["published"],
            percent_text(published_percent(r)),
            f"{r['method']:,}",
            percent_text(r["percent"]),
            f"{r['backbone']:,}",
            r["config"],
            r["note"],
        ]
        for r in rows
    ]
    caption = (
        "Published %Param figures (docs/methods.md) beside ours, counted on the architecture without "
        "weights. "
        "published: as printed (a percentage, or a count in millions); published %Param: that figure as a "
        "percentage of our backbone count; ours: %Param = method params / backbone as loaded for sequence "
        "classification."
    )
    # Fixed-width text columns, so that the long notes wrap inside a landscape page.
    return render(
        header,
        body,
        fmt,
        caption,
        align="lllrrrrp{3.0cm}p{4.2cm}",
        label="tab:params-published",
        json_rows=[{**r, "published_percent": published_percent(r)} for r in rows],
    )


def published_percent(r: dict) -> float:
    """A published figure as a percentage of our backbone: "0.24%" -> 0.24, "0.8M" -> 0.8e6 / backbone."""
    figure = r["published"]
    if figure.endswith("M"):
        return 100 * float(figure[:-1]) * 1e6 / r["backbone"]
    return float(figure.rstrip("%"))
