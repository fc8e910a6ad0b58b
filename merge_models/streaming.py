"""Aligned float32 chunks of one planned tensor's inputs, read into reused buffers.

Working in fixed-size chunks keeps the arithmetic in cache-sized, reused memory: whole-tensor
float32 temporaries of a large embedding cost more in page faults than in arithmetic.
"""

from __future__ import annotations

from typing import Iterator

import torch

from merge_models.checkpoint import Checkpoint
from merge_models.plan import MergePlan, TensorPlan
from merge_models.vocab import runs

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
    each input in its own shape. A vocabulary tensor with a row pairing streams only the paired
    rows, each input's rows gathered in pair order; `placements` and `unmerged_ranges` say where
    merged values go in the VLM's tensor and which of its elements stay the VLM's. Yielded
    tensors are overwritten by the next chunk.
    """

    def __init__(self, plan: MergePlan, entry: TensorPlan, buffers: ChunkBuffers, chunked: bool,
                 with_base: bool | None = None) -> None:
        """`with_base`: stream the base too (default: when the method works on task vectors)."""
        assert entry.canonical is not None
        self.sources: list[tuple[Checkpoint, str]] = [(plan.vlm, entry.name)]
        self.sources += [(s, s.canonical_map[entry.canonical]) for s in plan.sources]
        wanted = plan.method.needs_base if with_base is None else with_base
        self.base = (plan.base, plan.base.canonical_map[entry.canonical]) if plan.base and wanted else None
        self.row = entry.numel // entry.shape[0] if entry.shape else 1
        self.entry_numel = entry.numel
        pairing = entry.pairing
        self.numel = len(pairing) * self.row if pairing is not None else entry.numel
        self.shape = (len(pairing), *entry.shape[1:]) if pairing is not None else entry.shape
        self.vlm_runs = runs(pairing.vlm_rows) if pairing is not None else None
        fields = [plan.vlm.field, *(s.field for s in plan.sources), *([plan.base.field] if self.base else [])]
        self.input_runs = [None if pairing is None else runs(pairing.rows(None if f == plan.vlm.field else f))
                           for f in fields]
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

    def placements(self, start: int, count: int) -> list[tuple[int, int, int]]:
        """(element in the VLM's tensor, offset in the chunk, length) for a merged chunk starting at `start`."""
        if self.vlm_runs is None:
            return [(start, 0, count)]
        return [(target, offset, length) for offset, target, length in self._pieces(self.vlm_runs, start, count)]

    def unmerged_ranges(self) -> list[tuple[int, int]]:
        """[first, stop) element ranges of the VLM's tensor that no merged row covers (they keep its values)."""
        if self.vlm_runs is None:
            return []
        out, position = [], 0
        for _, row, length in self.vlm_runs:
            if row * self.row > position:
                out.append((position, row * self.row))
            position = (row + length) * self.row
        if position < self.entry_numel:
            out.append((position, self.entry_numel))
        return out

    def _pieces(self, row_runs: list[tuple[int, int, int]], start: int, count: int) -> Iterator[tuple[int, int, int]]:
        """(offset in the chunk, element in the input, length) covering the streamed elements [start, start + count)."""
        stop = start + count
        for first_pair, first_row, length in row_runs:
            lo, hi = max(first_pair * self.row, start), min((first_pair + length) * self.row, stop)
            if lo < hi:
                yield lo - start, first_row * self.row + (lo - first_pair * self.row), hi - lo

    def _read(self, slot: int, checkpoint: Checkpoint, name: str, start: int, count: int) -> torch.Tensor:
        dtype = checkpoint.tensors[name].dtype
        itemsize = torch.empty((), dtype=dtype).element_size()
        raw, f32 = self.buffers.get(slot, count, itemsize)
        row_runs = self.input_runs[slot]
        if row_runs is None:
            checkpoint.read_into(name, start, raw)
        else:
            for offset, element, length in self._pieces(row_runs, start, count):
                checkpoint.read_into(name, element, raw[offset * itemsize:(offset + length) * itemsize])
        return f32.copy_(raw.view(dtype))
