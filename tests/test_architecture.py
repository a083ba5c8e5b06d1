"""The shape of the code: no import cycle (imports inside functions counted), first-party imports at the
top of each module, every import left inside a function a heavy library with its reason beside it, and
`bench --help` loads none of them."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "methods", "sweeps", "reports", "benchmarks")


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            out[name] = path
    return out


def imports(name: str, path: Path, known: dict) -> list[tuple[ast.stmt, str, bool]]:
    """(node, first-party module it imports or '', whether it sits at the module's top level)."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (path.name == "__init__.py")]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            out.append((node, t if t != name else "", id(node) in top))
    return out


def test_no_import_cycle_counting_function_level_imports():
    known = modules()
    graph = {m: {t for _, t, _ in imports(m, p, known) if t} for m, p in known.items()}
    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles


def test_cycle_detection_finds_a_planted_cycle(tmp_path, monkeypatch):
    # The check above can fail: two modules that import each other inside functions form a component.
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "a.py").write_text("def f():\n    from bench import b\n")
    (tmp_path / "bench" / "b.py").write_text("def g():\n    from bench.a import f\n")
    known = {"bench.a": tmp_path / "bench" / "a.py", "bench.b": tmp_path / "bench" / "b.py"}
    graph = {m: {t for _, t, _ in imports(m, p, known) if t} for m, p in known.items()}
    assert graph == {"bench.a": {"bench.b"}, "bench.b": {"bench.a"}}


def test_imports_inside_functions_are_heavy_libraries_with_a_reason():
    known = modules()
    bad = []
    for name, path in known.items():
        lines = path.read_text().splitlines()
        for node, _, at_top in imports(name, path, known):
            if at_top:
                continue
            # the reason: "# lazy: ..." on the import's line or just above it (one reason per import block)
            nearby = lines[max(0, node.lineno - 6) : node.end_lineno]
            if not any("# lazy" in line for line in nearby):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert not bad


def test_help_loads_no_heavy_library():
    code = (
        "import sys; from bench.cli import build_parser; build_parser().format_help(); "
        "print(sorted(m for m in ('torch', 'transformers', 'mlflow', 'optuna', 'peft', 'pandas') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_ruff_rules_and_format_hold():
    """The lint rules of pyproject.toml (line length 110 included) and ruff's formatting, on all the code."""
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed in this environment (pip install -e .[dev])")
    paths = [*PACKAGES, "tests", "scripts"]
    for args in (["check", "--quiet"], ["format", "--check", "--quiet"]):
        done = subprocess.run([str(ruff), *args, *paths], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stdout + done.stderr
