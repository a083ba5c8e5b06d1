"""Peak memory of a block of `bench perf`: CUDA allocated on a GPU; on a CPU the process's RSS and, where
glibc provides mallinfo2, its live heap.

Why the live heap: RSS also holds memory the allocator kept after frees, and how much depends on the
process's allocation history (glibc raises its mmap threshold after large frees, then serves those sizes from
arenas it does not trim). Measured on BERT-large (random init, BitFit, SST-2, batch 16, the same batches):
bench and the Trainer held the same live heap at every step (peak 1,800 / 1,799 MiB) while their RSS rose by
557 / 447 MiB. The live heap (bytes allocated and not freed: tensors, gradients, optimizer state) is the
CPU counterpart of CUDA's allocated bytes, so training memory is its rise; RSS stays the peak the machine
needs."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import threading
import time

import psutil
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo2():
    """glibc's mallinfo2 (2.33+), or None (musl, macOS, older glibc)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    return fn


MALLINFO2 = _mallinfo2()


def live_heap() -> int | None:
    """Bytes allocated through malloc and not freed: arena chunks in use + mmapped chunks."""
    if MALLINFO2 is None:
        return None
    info = MALLINFO2()
    return info.uordblks + info.hblkhd


@contextlib.contextmanager
def peak_memory(model=None, interval: float = 0.005, heap_interval: float = 0.05):
    """Peak memory during the block and its rise over the start. `peak`: CUDA peak allocated, or peak RSS;
    `rise`: CUDA allocated, or the live heap (RSS where mallinfo2 is missing), above the start.

    The live heap is read when `model`'s forward returns (activations at their largest) and after every
    optimizer step (gradients and optimizer state alive), and every `heap_interval` seconds besides: one
    mallinfo2 call walks the free lists under the allocator's locks (about 1.5 ms on a fragmented heap),
    too slow to sample beside a timed loop as often as RSS."""
    out = {}
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        yield out
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        out.update(kind="CUDA peak allocated", rise_kind="CUDA allocated", peak=peak, rise=peak - start)
        return
    proc, stop = psutil.Process(), threading.Event()
    heap_start = live_heap()
    rss = [proc.memory_info().rss] * 2  # start, peak
    heap = [heap_start] * 2

    def read_heap(*_):
        heap[1] = max(heap[1], live_heap())

    hooks = []
    if heap_start is not None:
        hooks.append(register_optimizer_step_post_hook(read_heap))
        if model is not None:
            hooks.append(model.register_forward_hook(read_heap))

    def sample():
        last = 0.0
        while not stop.is_set():
            rss[1] = max(rss[1], proc.memory_info().rss)
            if heap_start is not None and time.perf_counter() - last >= heap_interval:
                read_heap()
                last = time.perf_counter()
            time.sleep(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        for hook in hooks:
            hook.remove()
        if heap_start is None:
            out.update(kind="peak RSS", rise_kind="RSS", peak=rss[1], rise=rss[1] - rss[0])
        else:
            read_heap()
            out.update(kind="peak RSS", rise_kind="live heap", peak=rss[1], rise=heap[1] - heap[0])
