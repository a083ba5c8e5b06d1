"""`bench perf` runs on a tiny model and its accounting adds up (no timing assertions)."""

import re

import pytest

from bench.cli import main


@pytest.mark.slow
def test_perf_runs_and_accounting_adds_up(tiny_models, glue_dir, tmp_path, capsys, monkeypatch):
    (tmp_path / "methods").mkdir()  # a user's folder named like our package must not shadow it
    monkeypatch.chdir(tmp_path)
    out_file = tmp_path / "perf.md"
    assert main(["perf", "--model", tiny_models["roberta"], "--task", "sst2", "--data-dir", str(glue_dir),
                 "--steps", "2", "--repeats", "1", "--batch-size", "8", "--methods", "lora",
                 "--out", str(out_file)]) == 0
    text = capsys.readouterr().out
    assert text.strip() == out_file.read_text().strip()
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]]
            for r in text.splitlines() if r.startswith("| ") and not r.startswith("| variant")
            and not r.startswith("| method")}
    assert {"bench", "trainer_pad128", "trainer_dynamic", "full", "lora"} <= set(rows)
    bench_epoch = float(rows["bench"][0])
    assert bench_epoch > 0
    for ref in ("trainer_pad128", "trainer_dynamic"):  # speed-up = reference epoch time / bench epoch time
        printed, recomputed = float(rows[ref][5].rstrip("x")), float(rows[ref][0]) / bench_epoch
        assert printed == pytest.approx(recomputed, rel=0.1, abs=0.02)  # both from 2-decimal roundings
    for name in ("full", "lora"):
        shares = [float(c.rstrip("%")) for c in rows[name][2:7]]
        assert 0 < sum(shares) <= 101  # data + forward + backward + optimizer + eval <= wall time
    assert rows["full"][1] == "1.00" and rows["full"][7].endswith("(1.00x)") and rows["full"][8].endswith("(1.00x)")
    for target in ("epoch speed-up vs run_glue padding to 128", "data + tracking share of wall time",
                   "cached tokenisation speed-up on a rerun", "`bench --help`",
                   "slowest frozen-backbone step / full FT step", "largest PEFT peak memory / full FT",
                   "largest PEFT training memory (peak above the loaded model) / full FT"):
        assert rows[target][2] in ("met", "MISSED")
    assert re.search(r"Machine: .+; torch ", text) and "1 repetitions alternated; medians" in text
