"""Starting a study's workers: through an existing scheduler (`bench sweep launch`: submitit, a SLURM array
job on a cluster or its local executor on one machine) or as sibling processes of one command
(`bench sweep work --workers N`: several small runs sharing one GPU, or a CPU's cores). No scheduler of our
own: every worker is the same stateless `bench sweep work` loop over the shared study, so workers may also
be started by hand, by Kubernetes (docs/scaling.md) or by anything else."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import submitit
import torch

from bench import signals
from bench.errors import BenchError, choices_error
from sweeps import driver
from sweeps.study import Study

EXECUTORS = ("local", "slurm")


def work_job(
    name: str,
    storage: str | None,
    output_dir: str,
    heartbeat: int,
    threads: int | None = None,
    tracking_uri: str | None = None,
) -> int:
    """One worker (what each scheduled job runs): trials until the study's budget is complete."""
    if threads:
        torch.set_num_threads(threads)

    signals.install()  # a scheduler's SIGTERM (time limit, scancel) ends the running trial's run KILLED
    return driver.work(name, storage, None, heartbeat, output_dir, tracking_uri=tracking_uri)


@contextlib.contextmanager
def environment_for_jobs(tracking_uri: str | None):
    """Scheduled jobs get a credentialed tracking URI through the environment they inherit at submission
    (a job's arguments are pickled to disk in its folder; a credential must not be); this process's own
    environment is restored afterwards."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before


def check_gpus(per_worker: int, workers: int, executor: str) -> None:
    """A GPU request the machine cannot meet is refused before anything is submitted."""
    if per_worker < 0:
        raise BenchError(f"--gpus-per-worker {per_worker} must be 0 or more")
    if per_worker and executor == "local":
        have = torch.cuda.device_count()
        if have < per_worker:
            raise BenchError(
                f"--gpus-per-worker {per_worker} with --executor local: this machine has {have} GPU(s)"
            )


def launch(
    name: str,
    storage: str | None,
    output_dir: str,
    workers: int,
    executor: str,
    gpus_per_worker: int = 0,
    mem_gb: float | None = None,
    timeout_min: int = 24 * 60,
    partition: str | None = None,
    heartbeat: int = 10,
    wait: bool = True,
    echo=print,
    tracking_uri: str | None = None,
) -> list:
    """Submit `workers` jobs of `bench sweep work <name>`; with wait, block until they end and say what each
    did. Everything that can be refused is checked before the first submission."""
    if workers < 1:
        raise BenchError(f"--workers {workers} must be at least 1")
    if executor not in EXECUTORS:
        raise choices_error("--executor", executor, EXECUTORS)
    if timeout_min < 1 or (mem_gb is not None and mem_gb <= 0):
        raise BenchError(f"--timeout-min {timeout_min} must be at least 1 and --mem-gb {mem_gb} positive")
    if executor == "slurm" and shutil.which("sbatch") is None:
        raise BenchError(
            "--executor slurm: no SLURM scheduler on this machine (sbatch not on PATH); run the "
            "command on the cluster's login node, or use --executor local"
        )
    check_gpus(gpus_per_worker, workers, executor)
    # a credential the workers would lack is refused now, not in N jobs
    Study(name, storage, output_dir, heartbeat, tracking_uri).tracking_uri  # noqa: B018
    folder = Path(output_dir) / "launch" / name
    ex = submitit.AutoExecutor(folder=str(folder), cluster=executor)
    params = {"timeout_min": timeout_min, "gpus_per_node": gpus_per_worker, "name": f"bench-{name}"[:64]}
    if mem_gb is not None:
        params["mem_gb"] = mem_gb
    if executor == "slurm":
        params |= {
            "slurm_array_parallelism": workers,
            **({"slurm_partition": partition} if partition else {}),
        }
    ex.update_parameters(**params)
    threads = None if gpus_per_worker or executor == "slurm" else max(1, (os.cpu_count() or 1) // workers)
    with environment_for_jobs(tracking_uri):
        if executor == "slurm":
            with ex.batch():  # one array job
                jobs = [ex.submit(work_job, name, storage, output_dir, heartbeat) for _ in range(workers)]
        else:
            jobs = [
                ex.submit(work_job, name, storage, output_dir, heartbeat, threads) for _ in range(workers)
            ]
    echo(
        f"submitted {workers} workers of study {name} ({executor}): job ids "
        f"{', '.join(str(j.job_id) for j in jobs)}; logs in {folder}"
    )
    if wait:
        failed = 0
        for j in jobs:
            try:
                echo(f"worker {j.job_id}: ran {j.result()} trials")
            except Exception as e:  # noqa: BLE001 - say which worker failed and where its log is, go on
                failed += 1
                echo(f"worker {j.job_id} failed: {str(e).strip().splitlines()[-1][:300]} (log: {folder})")
        if failed:
            raise BenchError(
                f"{failed} of {workers} workers failed (logs in {folder}); the study keeps every "
                "finished trial: launch again to complete it"
            )
    return jobs


def work_in_processes(
    name: str,
    storage: str | None,
    output_dir: str,
    workers: int,
    heartbeat: int,
    echo=print,
    tracking_uri: str | None = None,
) -> int:
    """`bench sweep work --workers N`: N workers of one study in spawned processes of this command (CUDA
    cannot fork), the CPU cores split between them; on a GPU they share it. Returns the trials they ran.
    The tracking URI goes to them as an argument, through the pool's pipe."""
    if workers < 1:
        raise BenchError(f"--workers {workers} must be at least 1")
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [
            pool.submit(work_job, name, storage, output_dir, heartbeat, threads, tracking_uri)
            for _ in range(workers)
        ]
        ran = [f.result() for f in futures]
    echo(f"{workers} worker processes ran {sum(ran)} trials ({', '.join(map(str, ran))})")
    return sum(ran)
