"""One YAML reader for everything bench reads (run configs, --set values, search spaces, task entries),
with YAML 1.2's core schema for scalars: PyYAML implements YAML 1.1, where `yes`/`no`/`on`/`off` are
booleans (a label named "no" would become False) and `1e-3` (no dot) is a string, not a number."""

from __future__ import annotations

import re

import yaml


class Loader(yaml.SafeLoader):
    pass


# Drop YAML 1.1's bool and float resolvers, then add YAML 1.2's (true/false only; any float notation).
Loader.yaml_implicit_resolvers = {
    first: [
        (tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def load(text: str):
    """Parse YAML text with the core-schema scalars above (raises yaml.YAMLError)."""
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
