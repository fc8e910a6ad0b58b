"""Aligned float32 chunks of one planned tensor's inputs, read into reused buffers.

Working in fixed-size chunks keeps the arithmetic in cache-sized, reused memory: whole-tensor
float32 temporaries of a large embedding cost more in page faults than in arithmetic.
"""

from __future__ import annotations

from typing import Iterator

import torch

from merge_models.checkpoint import Checkpoint
from merge_models.plan import MergePlan, TensorPlan

# Part of the engine's format: DARE masks are seeded per chunk of this many elements.
CHUNK_ELEMENTS = 1 << 21


class ChunkBuffers:
    """Raw and float32 buffers for each input, allocated once and reused for every tensor."""

    def __init__(self) -> None:
        self.raw: list[torch.Tensor] = []
        self.f32: list[torch.Tensor] = []

    def get(self, slot: int, count: int, itemsize: int) -> tuple[torch.Tensor, torch.Tensor]:
        while len(self.raw) <= slot:
            self.raw.append(torch.empty(0, dtype=torch.uint8))
            self.f32.append(torch.empty(0))
        if self.raw[slot].numel() < count * itemsize:
            self.raw[slot] = torch.empty(max(count, CHUNK_ELEMENTS) * max(itemsize, 4), dtype=torch.uint8)
        if self.f32[slot].numel() < count:
            self.f32[slot] = torch.empty(max(count, CHUNK_ELEMENTS))
        return self.raw[slot][: count * itemsize], self.f32[slot][:count]


class TensorStream:
    """The inputs of one merged tensor (VLM, sources, base) as float32 chunks.

    Chunked streams yield flat chunks of CHUNK_ELEMENTS; whole streams yield one chunk holding
    each input in its own shape. Only the first `numel` elements merge (fewer with shared vocab
    rows); yielded tensors are overwritten by the next chunk.
    """

    def __init__(self, plan: MergePlan, entry: TensorPlan, buffers: ChunkBuffers, chunked: bool,
                 with_base: bool | None = None) -> None:
        """`with_base`: stream the base too (default: when the method works on task vectors)."""
        assert entry.canonical is not None
        self.sources: list[tuple[Checkpoint, str]] = [(plan.vlm, entry.name)]
        self.sources += [(s, s.canonical_map[entry.canonical]) for s in plan.sources]
        wanted = plan.method.needs_base if with_base is None else with_base
        self.base = (plan.base, plan.base.canonical_map[entry.canonical]) if plan.base and wanted else None
        row = entry.numel // entry.shape[0] if entry.shape else 1
        self.numel = entry.rows * row if entry.rows is not None else entry.numel
        self.shape = (entry.rows, *entry.shape[1:]) if entry.rows is not None else entry.shape
        self.buffers = buffers
        self.chunk = CHUNK_ELEMENTS if chunked else max(self.numel, 1)
        self.chunked = chunked

    def chunks(self) -> Iterator[tuple[int, int, list[torch.Tensor], torch.Tensor | None]]:
        """(chunk index, first element, input chunks, base chunk) in order."""
        for index, start in enumerate(range(0, self.numel, self.chunk)):
            count = min(self.chunk, self.numel - start)
            inputs = [self._read(slot, c, name, start, count) for slot, (c, name) in enumerate(self.sources)]
            base = self._read(len(self.sources), *self.base, start, count) if self.base else None
            if not self.chunked:
                inputs = [x.reshape(self.shape) for x in inputs]
                base = base.reshape(self.shape) if base is not None else None
            yield index, start, inputs, base

    def _read(self, slot: int, checkpoint: Checkpoint, name: str, start: int, count: int) -> torch.Tensor:
        dtype = checkpoint.tensors[name].dtype
        itemsize = torch.empty((), dtype=dtype).element_size()
        raw, f32 = self.buffers.get(slot, count, itemsize)
        checkpoint.read_into(name, start, raw)
        return f32.copy_(raw.view(dtype))
