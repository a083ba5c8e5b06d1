"""Adding an encoder family is one module: a throwaway DistilBERT family in a plugin directory (layers under
transformer.layer, projections q_lin/k_lin/v_lin/out_lin, its own norm names and dropout, no token types)
reaches `bench params` (every method counted) and `bench run` (Adapter: its sites, norms and layers), with no
other edit, while the built-in families know nothing of it."""

import json
import os
import subprocess
import sys

import pytest

from support import all_runs, build_tiny_model, seeded_store

FAMILY = """
from bench.families import register
from bench.families.base import Family


@register
class Distil(Family):
    name = "distil"
    model_types = ("distilbert",)
    layers_path = "transformer.layer"
    projections = {"query": "attention.q_lin", "key": "attention.k_lin", "value": "attention.v_lin",
                   "attention_output": "attention.out_lin", "intermediate": "ffn.lin1", "output": "ffn.lin2"}
    norms = {"attention_norm": "sa_layer_norm", "output_norm": "output_layer_norm"}
    adapter_sites = ("attention.out_lin", "ffn.dropout")
    attention_path = "attention"
    tiny_config = {"max_position_embeddings": 160, "hidden_dim": 64}

    def hidden_dropout(self, config):
        return config.dropout
"""


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    root = tmp_path_factory.mktemp("family-plugin")
    (root / "families").mkdir()
    (root / "families" / "distil.py").write_text(FAMILY)
    namespace = {}
    # The class without registering it in this process (the other tests' registry stays the built-in one).
    exec(compile(FAMILY.replace("@register\n", ""), "distil.py", "exec"), namespace)
    model = build_tiny_model(root / "tiny-distil", namespace["Distil"]())
    config = root / "tiny-distil" / "tokenizer_config.json"
    conf = json.loads(config.read_text())
    conf["model_input_names"] = ["input_ids", "attention_mask"]  # DistilBERT takes no token types
    config.write_text(json.dumps(conf))
    return root, model


def bench(args, plugin_dir, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "BENCH_PLUGINS": str(plugin_dir)}
    return subprocess.run(
        [sys.executable, "-m", "bench.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_a_plugin_family_reaches_every_command(plugin, glue_dir, tmp_path, monkeypatch, capsys):
    root, model = plugin
    uri = seeded_store(tmp_path / "mlflow.db")
    proc = bench(["params", "--model", str(model), "--task", "rte", "--format", "json"], root, tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)["rows"]}
    L, H, I = 2, 32, 64  # noqa: E741
    assert rows["pasta"]["method"] == L * 3 * H  # [CLS] a [SEP] b [SEP]
    assert rows["lora"]["method"] == L * 2 * (2 * H * 8)  # q_lin and v_lin at r=8
    assert rows["bitfit"]["method"] == L * (7 * H + I) + H  # every bias, no pooler
    assert rows["full"]["percent"] == 100.0
    # A run with the family registered here as the plugin loader registers it (the loading itself is the
    # params call above: one subprocess is enough).
    from bench import families
    from bench.cli import main

    namespace = {}
    exec(compile(FAMILY.replace("@register\n", ""), "distil.py", "exec"), namespace)
    monkeypatch.setitem(families._FAMILIES, "distil", namespace["Distil"]())
    assert (
        main(
            [
                "run",
                "--method",
                "adapter",
                "--model",
                str(model),
                "--task",
                "rte",
                "--data-dir",
                str(glue_dir),
                "--max-steps",
                "2",
                "--batch-size",
                "4",
                "--no-progress",
                "--tracking-uri",
                uri,
                "--output-dir",
                str(tmp_path / "adapter"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"{L * 2 * (2 * H * 64 + 64 + H) + (2 * L + 1) * 2 * H:,}" in out  # adapters + LayerNorms


@pytest.mark.slow
def test_without_the_plugin_the_model_type_is_refused_in_one_line(plugin, glue_dir, tmp_path, capsys):
    from bench.cli import main

    _, model = plugin
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    assert (
        main(
            [
                "run",
                "--method",
                "pasta",
                "--model",
                str(model),
                "--task",
                "rte",
                "--data-dir",
                str(glue_dir),
                "--max-steps",
                "1",
                "--tracking-uri",
                uri,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        "pasta: model type 'distilbert' has no family module in bench/families" in err
        and err.count("\n") == 1
    )
    assert not (tmp_path / "m.db").exists() or all_runs(uri) == []  # refused before any run is created
