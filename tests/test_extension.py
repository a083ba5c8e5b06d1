"""Extension points: a throwaway method file (+ its search space) and a throwaway task entry, placed in a
plugin directory named by $BENCH_PLUGINS, show up in every command with no other edit. Also: the core never
imports sweeps/, reports/ or the CLI, and entry points survive a working directory that holds a methods/
folder."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import all_runs, seeded_store, sentence

ROOT = Path(__file__).resolve().parents[1]

TOY_METHOD = '''
"""Throwaway plugin method: trains the LayerNorm gains of the last k encoder layers."""
from dataclasses import dataclass

from methods import register
from methods.base import Method


@dataclass(frozen=True)
class ToyConfig:
    last_k: int = 1


@register
class LayerNormGains(Method):
    name = "lngain"
    summary = "LayerNorm gains of the last k layers (a plugin)"
    config_cls = ToyConfig
    knob = "last_k"
    knob_label = "last k layers"
    knob_values = (1, 2)
    default_lr = 1e-2

    def attach(self, model, cfg, ctx):
        for layer in list(ctx.family.layers(model))[-cfg.last_k:]:
            for role in ("attention_norm", "output_norm"):
                layer.get_submodule(ctx.family.norms[role]).weight.requires_grad_(True)
        return model

    def expected_params(self, model_config, task, family, cfg, special_positions):
        return cfg.last_k * 2 * model_config.hidden_size
'''

TOY_SPACE = "lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}\n"

TOY_TASK = """
name: toynli
kind: classification
description: a plugin task in the GLUE TSV layout
labels: [yes, no]
metrics: [accuracy, f1, glue_score]
main_metric: glue_score
score: [accuracy, f1]
hub: {dataset: example/toynli, text: [premise, hypothesis], label: label, splits: {train: train, dev:
validation}}
local: {dir: TOYNLI, format: tsv, text: [premise, hypothesis], label: label, files: {train: train.tsv, dev:
dev.tsv}}
report: {group: GLUE, order: 20, columns: {ToyNLI: dev_glue_score}}
"""


@pytest.fixture(scope="module")
def plugin(tmp_path_factory, glue_dir):
    root = tmp_path_factory.mktemp("plugin")
    (root / "methods").mkdir()
    (root / "methods" / "lngain.py").write_text(TOY_METHOD)
    (root / "spaces").mkdir()
    (root / "spaces" / "lngain.yaml").write_text(TOY_SPACE)
    (root / "tasks").mkdir()
    (root / "tasks" / "toynli.yaml").write_text(TOY_TASK)
    data = tmp_path_factory.mktemp("data")
    for split, n in (("train", 16), ("dev", 8)):
        rows = ["premise\thypothesis\tlabel"] + [
            f"{sentence(i)}\t{sentence(i + 1)}\t{['yes', 'no'][i % 2]}" for i in range(n)
        ]
        (data / "TOYNLI").mkdir(exist_ok=True)
        (data / "TOYNLI" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
        (data / "RTE").mkdir(exist_ok=True)
        (data / "RTE" / f"{split}.tsv").write_text((glue_dir / "RTE" / f"{split}.tsv").read_text())
    return root, data


def bench(args, plugin_dir, cwd, check=True):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "BENCH_PLUGINS": str(plugin_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.mark.slow
def test_plugin_method_and_task_reach_every_command(plugin, tiny_models, tmp_path):
    plugin_dir, data = plugin
    model = tiny_models["bert"]
    uri = seeded_store(tmp_path / "mlflow.db")
    common = ["--data-dir", str(data), "--tracking-uri", uri]

    assert "lngain" in bench(["methods"], plugin_dir, tmp_path).stdout
    assert "toynli" in bench(["tasks"], plugin_dir, tmp_path).stdout
    out = bench(
        ["params", "--model", model, "--task", "toynli", "--methods", "lngain,pasta"], plugin_dir, tmp_path
    )
    assert "lngain" in out.stdout and "64" in out.stdout  # 1 layer x 2 LayerNorms x hidden 32

    # A sweep over the plugin method on the plugin task (its space found in the plugin directory).
    sweep = bench(
        [
            "sweep",
            "run",
            "--method",
            "lngain",
            "--model",
            model,
            "--task",
            "toynli",
            "--trials",
            "2",
            "--seeds-final",
            "2",
            "--output-dir",
            str(tmp_path / "runs"),
            "--set",
            "max_steps=2",
            "--set",
            "batch_size=4",
            *common,
        ],
        plugin_dir,
        tmp_path,
    )
    assert "final" in sweep.stdout
    finals = [r for r in all_runs(uri) if r.data.tags.get("phase") == "final"]
    assert len(finals) == 2 and {r.data.tags["task"] for r in finals} == {"toynli"}
    assert all(r.data.metrics["params_method"] == 64 for r in finals)

    # A built-in task beside it: the plugin column joins the GLUE group's average.
    bench(
        [
            "sweep",
            "run",
            "--method",
            "lngain",
            "--model",
            model,
            "--task",
            "rte",
            "--trials",
            "1",
            "--seeds-final",
            "1",
            "--output-dir",
            str(tmp_path / "runs"),
            "--set",
            "max_steps=2",
            *common,
        ],
        plugin_dir,
        tmp_path,
    )
    table = bench(["report", "table", "--model", model, "--tracking-uri", uri], plugin_dir, tmp_path).stdout
    header = table.splitlines()[0]
    assert "ToyNLI" in header and "RTE" in header and "Avg" in header
    assert "| lngain |" in table

    # The intrinsic grid picks the plugin method's knob up, and its report reads the grid back.
    out = bench(
        [
            "intrinsic",
            "--model",
            model,
            "--task",
            "toynli",
            "--methods",
            "lngain",
            "--seeds",
            "1",
            "--points",
            "2",
            "--set",
            "max_steps=2",
            "--output-dir",
            str(tmp_path / "runs"),
            *common,
        ],
        plugin_dir,
        tmp_path,
    )
    assert "4 of 4 point runs finished" in out.stdout  # full + head anchors + lngain k=1, 2; 1 seed
    knobs = {
        r.data.tags["knob_value"]
        for r in all_runs(uri)
        if r.data.tags.get("phase") == "intrinsic" and r.data.tags["method"] == "lngain"
    }
    assert knobs == {"1", "2"}
    report = bench(
        [
            "report",
            "intrinsic",
            "--model",
            model,
            "--task",
            "toynli",
            "--tracking-uri",
            uri,
            "--out-dir",
            str(tmp_path / "fig"),
        ],
        plugin_dir,
        tmp_path,
    ).stdout
    assert "lngain" in report and (tmp_path / "fig" / f"intrinsic-{Path(model).name}-toynli.png").is_file()


@pytest.mark.slow
def test_a_broken_plugin_is_one_line(tmp_path):
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "broken.py").write_text("raise RuntimeError('boom')\n")
    proc = bench(["methods"], tmp_path, tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "broken.py" in proc.stderr and "boom" in proc.stderr


@pytest.mark.slow
def test_a_bad_task_entry_is_one_line(tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "bad.yaml").write_text(
        TOY_TASK.replace("main_metric: glue_score", "main_metric: bleu")
    )
    proc = bench(["tasks"], tmp_path, tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "bad.yaml" in proc.stderr and "bleu" in proc.stderr


@pytest.mark.slow
def test_entry_points_survive_a_cwd_with_package_named_folders(tmp_path):
    for name in ("methods", "sweeps", "reports", "benchmarks"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise ImportError('shadowed')\n")
    assert "pasta" in bench(["methods"], tmp_path / "none", tmp_path).stdout  # python -m bench.cli
    console = Path(sys.executable).parent / "bench"
    if console.exists():
        proc = subprocess.run([str(console), "methods"], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0 and "pasta" in proc.stdout


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_core_never_imports_cli_sweeps_reports_or_benchmarks():
    core = [p for p in (ROOT / "bench").rglob("*.py") if "cli" not in p.relative_to(ROOT / "bench").parts]
    core += list((ROOT / "methods").rglob("*.py"))
    bad = {
        str(p.relative_to(ROOT)): sorted(
            m
            for m in _imports(p)
            if m.split(".")[0] in ("sweeps", "reports", "benchmarks") or m.startswith("bench.cli")
        )
        for p in core
    }
    assert not {k: v for k, v in bad.items() if v}
    for package in ("sweeps", "reports"):  # ... and nothing imports the CLI but the CLI itself
        for p in (ROOT / package).glob("*.py"):
            assert not any(m.startswith("bench.cli") for m in _imports(p)), p
