"""Paper presets as data: bench/presets/<method>.yaml (and plugin directories' presets/*.yaml; a file's
`method` may list several methods when its entries hold for each, e.g. table2-selection.yaml) hold, per
named preset ("paper"), entries that match a model or model family and tasks, each value with its source
(a paper table or section, or a script in the authors' repository). Entries apply in file order, later
and more specific ones overriding; a preset exists for a (method, model, task) when an entry naming the
task matches."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError
from bench.models import family_of
from bench.plugins import load_registry

PRESET_DIR = Path(__file__).parent


@dataclass
class Entry:
    method: str
    preset: str
    models: tuple = ()  # model aliases/ids; () = any
    family: str | None = None
    tasks: tuple = ()  # () = every task (then the entry alone does not make the preset exist)
    source: str = ""
    values: dict = field(default_factory=dict)
    file: str = ""

    def matches(self, model: str, family: str | None, task: str) -> bool:
        return (
            (not self.models or model in self.models)
            and (self.family is None or self.family == family)
            and (not self.tasks or task in self.tasks)
        )

    def scope(self) -> str:
        who = (
            ",".join(self.models)
            if self.models
            else (f"family {self.family}" if self.family else "any model")
        )
        return f"{who} x {','.join(self.tasks) if self.tasks else 'any task'}"


def load_entries() -> list[Entry]:
    return load_registry(PRESET_DIR, "presets", "preset", _entries)


def _entries(data: dict, path: Path) -> list[Entry]:
    methods = [data["method"]] if isinstance(data["method"], str) else list(data["method"])
    entries = []
    for preset, items in data.items():
        if preset == "method":
            continue
        for method, item in ((m, i) for i in items for m in methods):
            match = item.get("match") or {}
            entries.append(
                Entry(
                    method,
                    preset,
                    tuple(match.get("model") or ()),
                    match.get("family"),
                    tuple(match.get("task") or ()),
                    str(item["source"]),
                    dict(item["values"]),
                    str(path),
                )
            )
    return entries


def resolve(name: str, method: str, model: str, task: str) -> tuple[dict, dict]:
    """-> (values as a config layer, {key: source}); method options appear as method.<key> in the sources."""
    entries = [e for e in load_entries() if e.preset == name and e.method == method]
    fam = family_of(model)
    hits = [e for e in entries if e.matches(model, fam, task)]
    if not any(e.tasks for e in hits):
        known = sorted({e.preset for e in load_entries()})
        if name not in known:
            raise BenchError(f"unknown preset {name!r} (choices: {', '.join(known)})")
        scopes = [e.scope() for e in entries if e.tasks]
        raise BenchError(
            f"no {name!r} preset for {method} on {model} ({fam or 'unknown family'}) / {task} "
            f"(presets exist for: {'; '.join(scopes) or 'none of this method'})"
        )
    values: dict = {}
    sources: dict = {}
    for e in hits:
        for key, value in e.values.items():
            if key == "method_options":
                values.setdefault("method_options", {}).update(value)
                sources.update({f"method.{k}": e.source for k in value})
            else:
                values[key] = value
                sources[key] = e.source
    return values, sources
