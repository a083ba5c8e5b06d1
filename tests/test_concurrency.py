"""Stores are created safely under concurrency: three `bench run`s started together on a new SQLite
tracking file all finish, and the file is a complete MLflow store afterwards."""

import os
import subprocess
import sys

import pytest

from support import all_runs


@pytest.mark.slow
def test_three_runs_on_a_fresh_sqlite_store(tiny_models, glue_dir, tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.cli",
                "run",
                "--method",
                "lora",
                "--model",
                tiny_models["bert"],
                "--task",
                "rte",
                "--data-dir",
                str(glue_dir),
                "--max-steps",
                "1",
                "--batch-size",
                "4",
                "--seed",
                str(seed),
                "--tracking-uri",
                uri,
                "--output-dir",
                str(tmp_path / "out"),
                "--no-progress",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2, 3)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    runs = all_runs(uri)
    assert sorted(r.data.tags["seed"] for r in runs) == ["1", "2", "3"]
    assert all(r.info.status == "FINISHED" for r in runs)


def test_a_file_that_is_not_an_mlflow_store_is_one_line(tmp_path, capsys):
    from bench.cli import main

    bad = tmp_path / "notes.db"
    bad.write_text("these are my notes, not a database")
    before = bad.read_bytes()
    assert main(["report", "table", "--model", "x", "--tracking-uri", f"sqlite:///{bad}"]) == 2
    err = capsys.readouterr().err
    assert "not a usable MLflow SQLite database" in err and err.count("\n") == 1
    assert bad.read_bytes() == before  # nothing written into the user's file


def test_a_store_left_mid_migration_says_how_to_finish(tmp_path, capsys):
    """A store whose schema stopped short of this MLflow's (an interrupted first migration, an older MLflow):
    one line naming both revisions and the command that finishes the migration; the file is left as it was."""
    import sqlite3

    from bench.cli import main

    from support import seeded_store

    db = tmp_path / "mlflow.db"
    seeded_store(db)
    with sqlite3.connect(db) as c:
        head = c.execute("select version_num from alembic_version").fetchone()[0]
        c.execute("update alembic_version set version_num = 'a8c4a736bde6'")
    before = db.read_bytes()
    capsys.readouterr()
    assert main(["report", "table", "--model", "x", "--tracking-uri", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "half-migrated schema (revision a8c4a736bde6" in err and head in err
    assert f"mlflow db upgrade sqlite:///{db}" in err
    assert db.read_bytes() == before
