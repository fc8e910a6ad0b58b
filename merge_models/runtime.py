"""What merges run with: tile-sized scratch tensors reused from tile to tile, thread pools kept
for the life of the process, and the CPU threading of torch while a merge runs."""

from __future__ import annotations

import gc
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator

import torch

_lock = threading.Lock()
_buffers: dict[int, dict[str, torch.Tensor]] = {}
_sessions = 0
_threads_before = 0
_collecting = True


def scratch(purpose: str, like: torch.Tensor) -> torch.Tensor:
    """A float32 tensor shaped like `like` (contents undefined) for one purpose of a method.

    On the CPU the same memory serves every tile, per thread, while merges run: fresh tile-sized
    tensors would cost a page fault per 4 KiB, more than the arithmetic on them. Elsewhere
    (accelerators have caching allocators) it is a new tensor.
    """
    if like.device.type != "cpu":
        return torch.empty(like.shape, device=like.device)
    with _lock:
        buffers = _buffers.setdefault(threading.get_ident(), {})
    buffer = buffers.get(purpose)
    if buffer is None or buffer.numel() < like.numel():
        buffer = buffers[purpose] = torch.empty(like.numel())
    return buffer[:like.numel()].view(like.shape)


@contextmanager
def merging(device: torch.device) -> Iterator[None]:
    """While any merge runs: on the CPU, torch's operations run single-threaded (the merge has its
    own threads for reading, combining and writing; per-operation hand-offs between threads on
    small tiles cost more than they save, and stall whenever the machine is shared), and Python's
    cycle collector pauses. When the last merge ends, the scratch memory is freed and both are
    restored."""
    global _sessions, _threads_before, _collecting
    with _lock:
        if _sessions == 0:
            _threads_before = torch.get_num_threads()
            _collecting = gc.isenabled()
            gc.disable()  # tiles make no reference cycles; collections would only scan the heap again and again
        _sessions += 1
        if device.type == "cpu":
            torch.set_num_threads(1)
    try:
        yield
    finally:
        with _lock:
            _sessions -= 1
            if _sessions == 0:
                _buffers.clear()
                torch.set_num_threads(_threads_before)
                if _collecting:
                    gc.enable()


_pools: dict[str, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def shared_pool(name: str, workers: int) -> ThreadPoolExecutor:
    """A thread pool kept for the life of the process (starting threads for every tensor costs more
    than merging a small one); merges running at once share it."""
    with _pools_lock:
        if name not in _pools:
            _pools[name] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"merged-vlm-{name}")
        return _pools[name]
