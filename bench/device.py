"""Where a run computes: processes, the accelerator and precision, and the peak memory it used."""

from __future__ import annotations

import os
import resource

import torch
from accelerate import Accelerator

from bench.errors import BenchError


def processes() -> int:
    """Processes of this run: torchrun / accelerate launch set WORLD_SIZE (data-parallel), else 1."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise BenchError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number of processes") from None


def make_accelerator(precision: str):
    cuda = torch.cuda.is_available()
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if precision in ("bf16", "fp16") and not cuda:
        raise BenchError(f"precision {precision} needs a GPU (this machine has none); use fp32 or auto")
    return Accelerator(mixed_precision="no" if precision == "fp32" else precision, cpu=not cuda), precision


def flush_denormals(enabled: bool) -> None:
    """On a CPU that can (x86 with SSE3), compute float32 denormals (below 1.2e-38) as zero from here on.
    Called before a run builds its model: the threads of torch's CPU pool are created at the first parallel
    operation and inherit the setting, which is per thread; a process that already ran parallel work keeps
    IEEE denormals in its pool threads. x86 handles each denormal operand through a slow microcode path:
    P-tuning v2's backward on ELECTRA-large (random init) ran 5x slower in matrix products full of them."""
    if enabled and not torch.cuda.is_available():
        torch.set_flush_denormal(True)


def reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> dict:
    """Training's peak memory: CUDA memory allocated (peak since reset_peak_memory, the run's own), or on a
    CPU the process's peak RSS (getrusage: since the process started, so in a worker that ran several runs
    it is the largest of them; `bench perf` measures each in a fresh process)."""
    if torch.cuda.is_available():
        return {"peak_cuda_allocated_bytes": torch.cuda.max_memory_allocated()}
    return {"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}  # Linux: KiB
