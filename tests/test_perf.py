"""`bench perf` runs on a tiny model and its accounting adds up (no timing assertions)."""

import csv
import re

import pytest
import torch

from bench.batching import training_batches
from bench.cli import main
from bench.resolve import build_config
from bench.tasks import get_task
from benchmarks.memory import live_heap, peak_memory
from benchmarks.perf import measured_batches, refusals


def tables(text: str) -> dict[str, list[dict]]:
    """Markdown tables by their first header cell, rows as {header: cell}."""
    out, header = {}, None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
            out.setdefault(cells[0], [])
            current = out[cells[0]]
        elif not set(line) <= set("|-"):
            current.append(dict(zip(header, cells, strict=True)))
    return out


@pytest.mark.slow
def test_perf_runs_and_accounting_adds_up(tiny_models, glue_dir, tmp_path, capsys, monkeypatch):
    (tmp_path / "methods").mkdir()  # a user's folder named like our package must not shadow it
    monkeypatch.chdir(tmp_path)
    out_file = tmp_path / "performance.md"
    # A page with a hand-written reading and another configuration's section: both must survive.
    out_file.write_text(
        "<!-- reading -->\nBitFit misses because...\n<!-- /reading -->\n"
        "<!-- section: other / rte / batch 4 -->\n## other\nkept\n<!-- /section -->\n"
    )
    # --random-init on a local model: its architecture with fresh weights, its own tokenizer
    assert (
        main(
            [
                "perf",
                "--model",
                tiny_models["roberta"],
                "--random-init",
                "--task",
                "sst2",
                "--data-dir",
                str(glue_dir),
                "--steps",
                "2",
                "--repeats",
                "1",
                "--batch-size",
                "8",
                "--methods",
                "lora",
                "--eval-samples",
                "5",
                "--markdown",
                str(out_file),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    page = out_file.read_text()
    assert "BitFit misses because..." in page and "## other\nkept" in page
    key = f"{tiny_models['roberta']} (random init) / sst2 / batch 8 / methods lora"
    section = page.split(f"<!-- section: {key} -->\n")[1].split("<!-- /section -->")[0]
    heading, stamp, *_ = section.splitlines()
    assert heading.startswith("## full / ") and re.match(
        r"Measured \d{4}-\d\d-\d\d on .+, load average [\d.]+ ", stamp
    )
    assert "matmul peak " in stamp
    history = list(csv.DictReader((tmp_path / "performance-history.csv").open()))
    assert {r["configuration"] for r in history} == {key} and len(history) >= 10
    assert all(r["status"] in ("met", "MISSED") and r["date"] and r["machine"] for r in history)
    t = tables(text)
    variants = {r["variant"]: r for r in t["variant"]}
    assert set(variants) == {"bench", "trainer_pad128", "trainer_dynamic"}
    assert not any(k.startswith("dev ") for k in t["variant"][0])  # random init: no dev metric
    assert "(random init)" in text and "Random init:" in text and "no dev metric is reported" in text
    assert "Evaluation on 5 dev examples (the first, --eval-samples)" in text
    bench_epoch = float(variants["bench"]["epoch s"])
    for ref in ("trainer_pad128", "trainer_dynamic"):  # speed-up = reference epoch time / bench epoch time
        printed = float(variants[ref]["bench speed-up per epoch"].rstrip("x"))
        assert printed == pytest.approx(float(variants[ref]["epoch s"]) / bench_epoch, rel=0.1, abs=0.02)
    methods = {r["method"]: r for r in t["method"] if "step ms" in r}
    assert set(methods) == {"full", "lora"}  # (BitFit's mask reference: tests/test_random_init.py)
    for row in methods.values():
        shares = [float(row[k].rstrip("%")) for k in ("data", "forward", "backward", "optimizer", "eval")]
        assert 0 < sum(shares) <= 101  # data + forward + backward + optimizer + eval <= wall time
    full = methods["full"]
    assert full["x full FT"] == "1.00" and full["peak memory MiB"].endswith("(1.00x)")
    # Each method against its natural Trainer reference, the same trainable parameters on both sides
    refs = [r for r in t["method"] if "reference" in r]
    assert [(r["method"], r["reference"]) for r in refs] == [
        ("full", "Trainer + bench's modules"),
        ("lora", "Trainer + peft get_peft_model"),
    ]
    for r in refs:
        ours, theirs = r["trainable bench / reference"].split(" / ")
        assert ours == theirs and int(ours.replace(",", "")) > 0
        speedup = float(r["reference epoch s"]) / float(r["bench epoch s"])
        assert float(r["bench speed-up per epoch"].rstrip("x")) == pytest.approx(speedup, rel=0.1, abs=0.02)
    targets = {r["target"]: r for r in t["target"]}
    for target in (
        "epoch speed-up vs run_glue padding to 128",
        "data + tracking share of wall time",
        "cached tokenisation speed-up on a rerun",
        "`bench --help`",
        "slowest frozen-backbone step / full FT step",
        "largest PEFT peak memory / full FT",
        "largest PEFT training memory (peak above the loaded model) / full FT",
        "LoRA step / full FT step",
        "slowest method's epoch speed-up vs its Trainer reference",
        "lowest evaluation throughput / the Trainer's",
    ):
        assert targets[target]["status"] in ("met", "MISSED")
    assert (
        targets["largest PEFT peak memory / full FT"]["goal"] == "<= 0.5"
    )  # paper-scale goal on random init
    assert re.search(r"Machine: .+; torch ", text) and "1 repetitions alternated; medians" in text


def test_perf_bad_input_is_one_line(capsys):
    for argv, bad in (
        (["--eval-samples", "0"], "--eval-samples 0"),
        (["--steps", "1"], "--steps 1"),
        (["--model", "deberta-v9"], "unknown model 'deberta-v9'"),  # not each default method's refusal
    ):
        assert main(["perf", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and bad in err


def test_methods_that_cannot_apply_are_refused_before_anything_runs(tiny_models, glue_dir, capsys):
    """ModernBERT has no biases (BitFit refuses), DeBERTa-v2 computes attention in its own code (P-tuning v2
    refuses): named with --methods, one line and exit 2; in the default list, left out with the reason."""
    for family, method, why in (
        ("modernbert", "bitfit", "no bias"),
        ("deberta-v2", "ptuning", "disentangled"),
    ):
        argv = ["perf", "--model", tiny_models[family], "--task", "rte", "--data-dir", str(glue_dir)]
        assert main([*argv, "--methods", f"lora,{method}"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"--methods: {method}: " in err and why in err
        cfg = build_config({"model": tiny_models[family], "task": "rte", "data_dir": str(glue_dir)})
        refused = refusals(cfg, get_task("rte"), ["lora", method, "pasta"])
        assert list(refused) == [method] and why in refused[method]


@pytest.mark.skipif(live_heap() is None, reason="glibc's mallinfo2 is not available here")
def test_training_memory_is_the_live_heap_rise():
    """A 64 MiB tensor allocated and freed inside the block: the live heap's rise is its 64 MiB (give or
    take the interpreter's own allocations), read when the forward returned while it was alive."""
    mib = 2**20
    model = torch.nn.Linear(1, 1)
    with peak_memory(model, heap_interval=10.0) as mem:
        x = torch.ones(16 * mib)
        model(torch.ones(1))  # read when the forward returns, not by the (10 s) timer
        del x
    assert mem["rise_kind"] == "live heap"
    # other objects the process frees or allocates meanwhile (a test worker's garbage) move it by little
    assert abs(mem["rise"] - 64 * mib) < 2 * mib
    assert mem["peak"] > 0


def test_measured_batches_are_the_first_of_the_draw_with_the_longest_last():
    """The batches `bench perf` measures: the first `steps` of bench's draw for the seed, in its order, except
    that the one with the longest row runs last (full FT's optimizer state exists by then)."""
    lengths = [(7 * i) % 97 + 3 for i in range(400)]
    cfg = build_config({"method": "bitfit", "model": "minilm", "task": "rte", "batch_size": 8})
    draw = training_batches(cfg.batch_order, lengths, 8, torch.Generator().manual_seed(cfg.seed))
    for steps in (1, 3, 8):
        got = measured_batches(cfg, lengths, steps)
        first = draw[:steps]
        tallest = [max(lengths[i] for i in b) for b in first]
        k = tallest.index(max(tallest))
        assert got[-1] == first[k]
        assert got[:-1] == first[:k] + first[k + 1 :]
