"""Everything bench knows about an architecture lives in its family module (bench/families/<family>.py):
no other product module names a family, a model type or a checkpoint in its code. Comments and docstrings
may (they explain); the CLI's help texts and examples may (they show what a user types); so may the tables
of published figures, which cite papers about named checkpoints."""

import ast
import re
from pathlib import Path

from bench.families import families

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("bench", "methods", "sweeps", "reports", "benchmarks")
EXEMPT_DIRS = (ROOT / "bench" / "families", ROOT / "bench" / "cli")


def names_pattern() -> re.Pattern:
    words = {w for fam in families().values() for w in (fam.name, *fam.model_types, *fam.aliases)}
    words |= {w.split("-")[0] for w in words}  # "xlm", "deberta", "bert" ...
    return re.compile(
        r"(?<![A-Za-z0-9])("
        + "|".join(sorted(map(re.escape, words), key=len, reverse=True))
        + r")(?![A-Za-z0-9])",
        re.IGNORECASE,
    )


def code_strings(tree: ast.AST):
    """Identifiers, attribute names and string literals outside docstrings and PUBLISHED* tables."""
    skip = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            skip.add(id(body[0].value))  # a docstring
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id.startswith("PUBLISHED") for t in node.targets
        ):
            skip |= {id(n) for n in ast.walk(node.value)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value
        elif isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            yield node.lineno, node.name


def test_no_architecture_is_named_outside_its_family_module():
    pattern = names_pattern()
    hits = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if any(path.is_relative_to(d) for d in EXEMPT_DIRS):
                continue
            for line, text in code_strings(ast.parse(path.read_text())):
                for part in re.split(r"[_.]", text):  # snake_case and dotted names: each word
                    if pattern.fullmatch(part) or (" " in text or "/" in text) and pattern.search(part):
                        hits.append(f"{path.relative_to(ROOT)}:{line}: {text[:80]!r}")
                        break
    assert not hits, "\n".join(hits)


def test_the_pattern_catches_a_family_name():
    pattern = names_pattern()
    tree = ast.parse('if config.model_type == "roberta":\n    layers = model.deberta.encoder\n')
    found = [t for _, t in code_strings(tree) if any(pattern.fullmatch(p) for p in re.split(r"[_.]", t))]
    assert found == ["roberta", "deberta"] or sorted(found) == ["deberta", "roberta"]
