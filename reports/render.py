"""One table renderer for the terminal, Markdown, LaTeX (booktabs, through pandas' Styler), CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import re

import pandas as pd

FORMATS = ("text", "md", "latex", "csv", "json")


LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "_": r"\_",
    "#": r"\#",
    "$": r"\$",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\^{}",
    # In LaTeX's default OT1 text font "<" and ">" print as inverted marks: set them as math.
    "<=": r"$\le$",
    ">=": r"$\ge$",
    "<": "$<$",
    ">": "$>$",
    "±": r"$\pm$",
    "†": r"\textdagger{}",
    "‡": r"\textdaggerdbl{}",
    "≈": r"$\approx$",
    "×": r"$\times$",
}
_LATEX_RE = None


def latex_escape(text: str) -> str:
    """Text for LaTeX, in one pass (a replacement is never escaped again)."""
    global _LATEX_RE
    if _LATEX_RE is None:
        _LATEX_RE = re.compile("|".join(re.escape(k) for k in sorted(LATEX, key=len, reverse=True)))
    return _LATEX_RE.sub(lambda m: LATEX[m.group(0)], str(text))


def render(
    header: list[str],
    rows: list[list[str]],
    fmt: str,
    caption: str = "",
    align: str | None = None,
    bold: set | None = None,
    italic_rows: set | None = None,
    rule_before: int | None = None,
    label: str | None = None,
    json_rows: list[dict] | None = None,
) -> str:
    """rows are already-formatted strings. bold: (row, column) cells set in bold (Markdown **, LaTeX
    \\bfseries); italic_rows: rows whose first cell is italic in LaTeX; rule_before: a rule above that row
    (e.g. between our rows and published ones); label: the LaTeX \\label. json_rows: the numbers behind the
    table for `json` (when absent, the rows as strings keyed by header)."""
    bold, italic_rows = bold or set(), italic_rows or set()
    if fmt == "json":
        return (
            json.dumps(
                {
                    "caption": caption,
                    "rows": json_rows
                    if json_rows is not None
                    else [dict(zip(header, r, strict=False)) for r in rows],
                },
                indent=1,
                default=float,
            )
            + "\n"
        )
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
        return buf.getvalue()
    if fmt == "md":
        cells = [
            [f"**{c}**" if (i, j) in bold and c not in ("", "-") else c for j, c in enumerate(r)]
            for i, r in enumerate(rows)
        ]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += [
            "| " + " | ".join(r) + " |" for r in cells
        ]  # Markdown has no inner rule: rows say what they are
        return "\n".join(lines) + (f"\n\n{caption}" if caption else "") + "\n"
    if fmt == "latex":
        return latex_table(header, rows, caption, align, bold, italic_rows, rule_before, label)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    sides = align or "l" + "r" * (len(header) - 1)  # names left, numbers right

    def fmt_row(r):
        return "  ".join(
            str(c).ljust(w) if side == "l" else str(c).rjust(w)
            for c, w, side in zip(r, widths, sides, strict=False)
        )

    lines = [fmt_row(header), "  ".join("-" * w for w in widths)]
    lines += [
        ("  ".join("-" * w for w in widths) + "\n" if i == rule_before else "") + fmt_row(r)
        for i, r in enumerate(rows)
    ]
    return "\n".join(lines) + (f"\n{caption}" if caption else "") + "\n"


def latex_table(header, rows, caption, align, bold, italic_rows, rule_before, label) -> str:
    """booktabs table through pandas' Styler.to_latex: cells and headers escaped by pandas, bold and italic as
    CSS converted to \\bfseries / \\itshape, caption and label placed by pandas. Two things Styler has no
    option for are added to its output: \\small, and the rule above `rule_before`."""
    df = pd.DataFrame(rows, columns=pd.Index(header))
    css = pd.DataFrame(
        [
            [
                ";".join(
                    x
                    for x in (
                        "font-weight: bold" if (i, j) in bold else "",
                        "font-style: italic" if i in italic_rows and j == 0 else "",
                    )
                    if x
                )
                for j in range(len(header))
            ]
            for i in range(len(rows))
        ],
        columns=df.columns,
    )
    # Our escape, not pandas' escape="latex": it also sets < > (inverted marks in LaTeX's default OT1 font),
    # ± and † so that the table prints right in any preamble.
    styler = (
        df.style.hide(axis="index")
        .format(latex_escape)
        .format_index(latex_escape, axis=1)
        .apply(lambda _: css, axis=None)
    )
    tex = styler.to_latex(
        hrules=True,
        column_format=align or "l" + "r" * (len(header) - 1),
        position="t",
        position_float="centering",
        caption=latex_escape(caption) if caption else None,
        label=label,
        convert_css=True,
        environment="table",
    )
    lines = tex.splitlines()
    lines.insert(lines.index("\\centering") + 1, "\\small")
    if rule_before is not None:
        first = lines.index("\\midrule") + 1
        lines.insert(first + rule_before, "\\midrule")
    return "\n".join(lines) + "\n"


def standalone_latex(table: str) -> str:
    """A complete document around a table, for pdflatex."""
    return (
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[margin=1cm,landscape]{geometry}\n"
        "\\begin{document}\n" + table + "\\end{document}\n"
    )


def save_figure(fig, path_stem: str) -> list[str]:
    """A matplotlib figure as PNG (for the README and the UI) and PDF (for papers); closes it."""
    import matplotlib.pyplot as plt  # lazy: figure writers choose the Agg backend first

    fig.tight_layout()
    out = []
    for ext in ("png", "pdf"):
        fig.savefig(f"{path_stem}.{ext}", dpi=130, bbox_inches="tight")  # legends placed outside the axes
        out.append(f"{path_stem}.{ext}")
    plt.close(fig)
    return out
