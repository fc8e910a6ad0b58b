"""Scratch memory for merge methods: tile-sized float32 tensors reused from tile to tile."""

from __future__ import annotations

import threading

import torch

_local = threading.local()


def scratch(purpose: str, like: torch.Tensor) -> torch.Tensor:
    """A float32 tensor shaped like `like` (contents undefined) for one purpose of a method.

    On the CPU the same memory serves every tile of a merge, per thread: fresh tile-sized
    tensors would cost a page fault per 4 KiB, more than the arithmetic on them. Elsewhere
    (accelerators have caching allocators) it is a new tensor.
    """
    if like.device.type != "cpu":
        return torch.empty(like.shape, device=like.device)
    buffers = _local.__dict__.setdefault("buffers", {})
    buffer = buffers.get(purpose)
    if buffer is None or buffer.numel() < like.numel():
        buffer = buffers[purpose] = torch.empty(like.numel())
    return buffer[:like.numel()].view(like.shape)


def release_scratch() -> None:
    """Free this thread's scratch tensors."""
    _local.__dict__.pop("buffers", None)

