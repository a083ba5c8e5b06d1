"""Published comparisons as data: reports/layouts/<name>.yaml (and plugin directories' layouts/) give a
paper table's columns, each with the metric and split its paper reports and the metric of ours that
matches it, and the published rows with their sources. Our rows are read on the same metric; the caption
says where the splits differ (GLUE test labels are private, so ours are dev)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError, choices_error
from bench.plugins import load_registry

LAYOUT_DIR = Path(__file__).parent / "layouts"


@dataclass
class Layout:
    name: str
    title: str
    models: tuple
    published_split: str
    columns: list  # {label, task, metric, ours}
    average_note: str  # how the paper averages ("" = no average column)
    published: list  # {method, label, source, param, values, avg?}
    file: str
    auto: bool = True  # picked by `--published` for its models (else only by name)

    @property
    def labels(self) -> list[str]:
        return [c["label"] for c in self.columns]

    def report_columns(self) -> list[tuple[str, str, str, str]]:
        """(label, task, logged metric without the metrics. prefix, group) as reports.runs.aggregate reads."""
        return [(c["label"], c["task"], c["ours"], self.name) for c in self.columns]


def load_layouts() -> dict[str, Layout]:
    return {layout.name: layout for layout in load_registry(LAYOUT_DIR, "layouts", "layout", _layout)}


def _layout(d: dict, path: Path) -> Layout:
    layout = Layout(
        d["name"],
        d["title"],
        tuple(d["models"]),
        str(d["published_split"]),
        list(d["columns"]),
        str(d.get("average") or ""),
        list(d.get("published") or []),
        str(path),
        bool(d.get("auto", True)),
    )
    for c in layout.columns:
        c["label"], c["task"], c["metric"], c["ours"]  # noqa: B018 - every column names all four
    return layout


def get_layout(name: str | None, model: str) -> Layout:
    """The named layout, else the first whose models include `model`."""
    layouts = load_layouts()
    if name:
        if name not in layouts:
            raise choices_error("layout", name, layouts)
        return layouts[name]
    for layout in layouts.values():
        if layout.auto and model in layout.models:
            return layout
    raise BenchError(
        f"no published layout for model {model!r} (layouts: "
        + "; ".join(f"{n} for {', '.join(v.models)}" for n, v in layouts.items())
        + ")"
    )
