"""One table renderer for the terminal, Markdown, LaTeX (booktabs) and CSV."""

from __future__ import annotations

import csv
import io

FORMATS = ("text", "md", "latex", "csv")


def latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("$", r"\$"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}")):
        text = text.replace(a, b)
    # In LaTeX's default OT1 text font "<" and ">" print as inverted marks: set them as math.
    for a, b in (("<=", r"$\le$"), (">=", r"$\ge$"), ("<", "$<$"), (">", "$>$")):
        text = text.replace(a, b)
    return text


def render(header: list[str], rows: list[list[str]], fmt: str, caption: str = "", latex_rows=None,
           align: str | None = None, rule_before: int | None = None) -> str:
    """rows are already-formatted strings. latex_rows, when given, replace rows in LaTeX (for bold and
    small-type cells that the other formats print plainly). rule_before: a LaTeX \\midrule above that
    row, e.g. between our rows and published ones."""
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
        return buf.getvalue()
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + (f"\n\n{caption}" if caption else "") + "\n"
    if fmt == "latex":
        align = align or "l" + "r" * (len(header) - 1)
        body = latex_rows if latex_rows is not None else [[latex_escape(c) for c in r] for r in rows]
        lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{align}}}", r"\toprule",
                 " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
        lines += [(r"\midrule" + "\n" if i == rule_before else "") + " & ".join(r) + r" \\" for i, r in enumerate(body)]
        lines += [r"\bottomrule", r"\end{tabular}"]
        if caption:
            lines.append(rf"\caption{{{latex_escape(caption)}}}")
        lines.append(r"\end{table}")
        return "\n".join(lines) + "\n"
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    fmt_row = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(r, widths, strict=False)))
    lines = [fmt_row(header), "  ".join("-" * w for w in widths)] + [fmt_row(r) for r in rows]
    return "\n".join(lines) + (f"\n{caption}" if caption else "") + "\n"


def standalone_latex(table: str) -> str:
    """A complete document around a table, for pdflatex."""
    return ("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[margin=1cm,landscape]{geometry}\n"
            "\\begin{document}\n" + table + "\\end{document}\n")


def save_figure(fig, path_stem: str) -> list[str]:
    """A matplotlib figure as PNG (for the README and the UI) and PDF (for papers); closes it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = []
    for ext in ("png", "pdf"):
        fig.savefig(f"{path_stem}.{ext}", dpi=130)
        out.append(f"{path_stem}.{ext}")
    plt.close(fig)
    return out
