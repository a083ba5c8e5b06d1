"""Faults of the machine, not of the input: a disk that fills up or turns read-only while a run writes. Each
ends in one line naming the path, exit 2, no traceback; the run is closed FAILED and the store stays whole."""

import os
import subprocess
import uuid

import pytest
from mlflow.tracking import MlflowClient

from bench.cli import main

from support import all_runs, seeded_store


@pytest.fixture
def small_disk(tmp_path):
    """A 48 KiB tmpfs (root and mount(8) needed; skipped otherwise)."""
    where = tmp_path / "small"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def run_argv(tiny_models, glue_dir, uri, out, method="full"):
    return ["run", "--method", method, "--model", tiny_models["bert"], "--task", "rte",
            "--data-dir", str(glue_dir), "--max-steps", "1", "--batch-size", "4",
            "--tracking-uri", uri, "--output-dir", str(out), "--no-progress"]  # fmt: skip


def test_disk_full_at_checkpoint_save_is_one_line(tiny_models, glue_dir, tmp_path, small_disk, capsys):
    """The experiment's artifacts live on the small disk: the full-FT checkpoint (about 110 KB) does not
    fit."""
    uri = seeded_store(tmp_path / "mlflow.db")
    c = MlflowClient(uri)
    c.create_experiment("bench-rte", artifact_location=small_disk.as_uri())
    assert main(run_argv(tiny_models, glue_dir, uri, tmp_path / "out", "head")) == 0  # a small one fits
    capsys.readouterr()
    assert main(run_argv(tiny_models, glue_dir, uri, tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bench: error: ") and "Traceback" not in err, err
    assert "No space left on device" in err and str(small_disk) in err
    states = sorted((r.data.tags["method"], r.info.status) for r in all_runs(uri))
    assert states == [("full", "FAILED"), ("head", "FINISHED")]
    assert not list(small_disk.rglob("*.safetensors"))[1:]  # the head run's weights only: no partial file


def test_read_only_artifact_directory_is_one_line(tiny_models, glue_dir, tmp_path, capsys):
    if os.geteuid() == 0:  # root writes through file modes: make the directory read-only another way
        ro = tmp_path / "ro"
        ro.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=16k", "tmpfs", str(ro)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip("cannot mount a read-only tmpfs here")
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
    try:
        uri = seeded_store(tmp_path / "mlflow.db")
        MlflowClient(uri).create_experiment(
            f"bench-rte-{uuid.uuid4().hex[:6]}", artifact_location=ro.as_uri()
        )
        name = next(e.name for e in MlflowClient(uri).search_experiments() if e.name.startswith("bench-rte-"))
        argv = [*run_argv(tiny_models, glue_dir, uri, tmp_path / "out", "head"), "--experiment", name]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert "Read-only file system" in err or "Permission denied" in err
        assert [r.info.status for r in all_runs(uri)] == ["FAILED"]
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(ro)], check=False)
