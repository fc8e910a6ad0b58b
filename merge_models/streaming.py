"""Aligned float32 tiles of one planned tensor's inputs, on the merge device, read ahead on a thread.

Working in tiles keeps the arithmetic in small, reused memory: on the CPU a tile's float32
working set stays in cache, where whole-tensor temporaries of a large embedding would cost more
in page faults and memory traffic than in arithmetic. A background thread reads the next block
of tiles' raw bytes (pread, into page-locked memory when the merge device is an accelerator)
while the current block is merged; each input is decoded to float32 once per tile, on the merge
device.
"""

from __future__ import annotations

from typing import Iterator

import torch

from merge_models.checkpoint import Checkpoint, itemsize
from merge_models.plan import MergePlan, TensorPlan
from merge_models.runtime import shared_pool
from merge_models.vocab import runs

# Part of the engine's format: DARE masks are seeded, and its l1 sums taken, per block of this many elements.
CHUNK_ELEMENTS = 1 << 21
# Tile sizes: a CPU tile's float32 inputs fit in cache; an accelerator's tiles amortise kernel launches.
CPU_TILE = 1 << 18
ACCELERATOR_TILE = 1 << 23
# Reads (and writes) go by blocks of at least this many elements, to keep thread hand-offs few.
READ_BLOCK = CHUNK_ELEMENTS
# Reading sets: the block being merged and the one being read.
READ_SETS = 2
# Threads reading ahead, shared by the merges that run at once (transformers loads tensors on 4).
READERS = 4
# A tensor whose float32 inputs fit in this many bytes is read once even when its method makes
# several passes (TIES, Breadcrumbs, DARE-l1): the first pass keeps the decoded tiles for the rest.
HOLD_BYTES = 384 * 2**20


def tile_elements(device: torch.device, chunked: bool, fixed: bool) -> int | None:
    """Elements per tile: the format's blocks for methods seeded per block (`fixed`), the whole
    tensor for methods that need it (not `chunked`), else a size suited to the device."""
    if not chunked:
        return None
    if fixed:
        return CHUNK_ELEMENTS
    return CPU_TILE if device.type == "cpu" else ACCELERATOR_TILE


class ChunkBuffers:
    """Memory reused for every tensor of a merge: host buffers that raw bytes are read into (one per
    input and reading set, page-locked for an accelerator) and float32 buffers on the merge device."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self._outputs = [torch.empty(0, dtype=torch.uint8, device=device) for _ in range(2)]
        self._turn = 0
        # As tensors name it ("cuda" becomes "cuda:N"), so it compares equal to where tensors made on it live.
        self.device = self._outputs[0].device
        self.accelerated = self.device.type != "cpu"
        self._raw: dict[tuple[int, int], torch.Tensor] = {}
        self._staged: dict[int, torch.Tensor] = {}
        self._f32: dict[int, torch.Tensor] = {}
        self._held: dict[int, torch.Tensor] = {}

    def raw(self, read_set: int, slot: int, nbytes: int) -> torch.Tensor:
        """A host uint8 buffer of `nbytes` for one input of one reading set."""
        buffer = self._raw.get((read_set, slot))
        if buffer is None or buffer.numel() < nbytes:
            buffer = torch.empty(max(nbytes, 4 * CPU_TILE), dtype=torch.uint8, pin_memory=self.accelerated)
            self._raw[(read_set, slot)] = buffer
        return buffer[:nbytes]

    def staged(self, slot: int, nbytes: int) -> torch.Tensor:
        """A uint8 buffer on the accelerator that raw bytes are copied into before decoding."""
        buffer = self._staged.get(slot)
        if buffer is None or buffer.numel() < nbytes:
            buffer = self._staged[slot] = torch.empty(nbytes, dtype=torch.uint8, device=self.device)
        return buffer[:nbytes]

    def output(self, count: int, dtype: torch.dtype) -> torch.Tensor:
        """A buffer of `count` elements of `dtype` on the merge device for merged values: two in turn, so
        a block stays valid while the next one is merged."""
        nbytes = count * itemsize(dtype)
        self._turn ^= 1
        if self._outputs[self._turn].numel() < nbytes:
            self._outputs[self._turn] = torch.empty(nbytes, dtype=torch.uint8, device=self.device)
        return self._outputs[self._turn][:nbytes].view(dtype)

    def held(self, slot: int, count: int) -> torch.Tensor:
        """A float32 buffer of `count` elements on the merge device holding one input of a whole tensor."""
        buffer = self._held.get(slot)
        if buffer is None or buffer.numel() < count:
            buffer = self._held[slot] = torch.empty(count, device=self.device)
        return buffer[:count]

    def f32(self, slot: int, count: int, parity: int = 0) -> torch.Tensor:
        """A float32 buffer of `count` elements on the merge device, one of two (by `parity`), so a
        tile stays valid while the next one is decoded."""
        key = 2 * slot + parity
        buffer = self._f32.get(key)
        if buffer is None or buffer.numel() < count:
            buffer = self._f32[key] = torch.empty(max(count, CPU_TILE), device=self.device)
        return buffer[:count]


def working_bytes(plan: MergePlan, device: torch.device | str = "cpu") -> int:
    """About how much memory a merge of `plan` works in beyond the merged output: tiles read ahead
    and decoded, scratch, tiles held between passes and the values gathered for exact cut-offs."""
    from merge_models.methods.selection import GATHER_LIMIT

    merged = plan.merged()
    if not merged:
        return 0
    streams = 1 + len(plan.sources) + (1 if plan.base and plan.method.needs_base else 0)
    method = plan.method.impl
    largest = max(entry.numel for entry in merged)
    tile = tile_elements(torch.device(device), method.chunked, method.fixed_tiles) or largest
    block = max(tile, READ_BLOCK) if method.chunked else largest
    reading = READ_SETS * streams * block * 4 + 2 * streams * tile * 4  # raw blocks (at most 4 bytes per value)
    scratch = 2 * 8 * tile * 4  # two combining threads, a few tile-sized tensors each
    multi_pass = getattr(method, "sparsify", None) in ("magnitude", "band", "dare")
    held = min(largest * streams * 4, HOLD_BYTES) if multi_pass else 0
    gathered = 2 * (1 + len(plan.sources)) * GATHER_LIMIT * 4 if multi_pass else 0  # two ranks per input at most
    return reading + scratch + held + gathered


def sample_starts(numel: int, blocks: int, length: int) -> tuple[int, list[int]]:
    """A sample of `blocks` evenly spaced runs of `length` elements from `numel`: the run length (at most
    `numel`) and the runs' first elements, in order and without repeats."""
    length = min(length, numel)
    span = numel - length
    return length, sorted({span * k // max(blocks - 1, 1) for k in range(blocks)})


class TensorStream:
    """The inputs of one merged tensor (VLM, sources, base) as float32 tiles on the merge device.

    Tiled streams yield flat tiles of `tile` elements, read in blocks of `block`; whole streams
    (tile None) yield one tile holding each input in its own shape. A vocabulary tensor with a row
    pairing streams only the paired rows, each input's rows gathered in pair order; `placements`
    and `unmerged_ranges` say where merged values go in the VLM's tensor and which of its elements
    stay the VLM's. Yielded tensors stay valid while the next tile is decoded and are overwritten
    by the one after.
    """

    def __init__(self, plan: MergePlan, entry: TensorPlan, buffers: ChunkBuffers, tile: int | None,
                 with_base: bool | None = None) -> None:
        """`with_base`: stream the base too (default: when the method works on task vectors)."""
        assert entry.canonical is not None
        self.sources: list[tuple[Checkpoint, str]] = [(plan.vlm, entry.name)]
        self.sources += [(s, s.canonical_map[entry.canonical]) for s in plan.sources]
        wanted = plan.method.needs_base if with_base is None else with_base
        self.has_base = plan.base is not None and wanted
        if self.has_base:
            self.sources.append((plan.base, plan.base.canonical_map[entry.canonical]))
        self.row = entry.numel // entry.shape[0] if entry.shape else 1
        self.entry_numel = entry.numel
        pairing = entry.pairing
        self.numel = len(pairing) * self.row if pairing is not None else entry.numel
        self.shape = (len(pairing), *entry.shape[1:]) if pairing is not None else entry.shape
        self.vlm_runs = runs(pairing.vlm_rows) if pairing is not None else None
        fields = [None, *(checkpoint.field for checkpoint, _ in self.sources[1:])]  # None: the VLM's rows
        self.input_runs = [None if pairing is None else runs(pairing.rows(f)) for f in fields]
        self.buffers = buffers
        self.device = buffers.device
        self.tile = tile or max(self.numel, 1)
        self.block = self.tile * max(READ_BLOCK // self.tile, 1)
        self.whole = tile is None
        self._held_tiles: list[tuple[int, int, list[torch.Tensor]]] | None = None

    def chunks(self, hold: bool = False) -> Iterator[tuple[int, int, list[torch.Tensor], torch.Tensor | None]]:
        """(tile index, first element, input tiles, base tile) in order.

        A pass with `hold` (one more will follow) keeps the decoded tiles when they fit HOLD_BYTES,
        and later passes yield those instead of reading again; only the last pass may change the
        tiles it is given.
        """
        if self._held_tiles is not None:
            tiles = self._held_tiles
            self._held_tiles = tiles if hold else None
            yield from ((i, start, *self._split(tensors)) for i, start, tensors in tiles)
            return
        keep = hold and not self.whole and self.numel * len(self.sources) * 4 <= HOLD_BYTES
        held: list[tuple[int, int, list[torch.Tensor]]] = []
        blocks = list(range(0, self.numel, self.block))
        copied: list[torch.cuda.Event | None] = [None] * READ_SETS
        index = 0
        # A tensor of one block is read right here; larger ones read the next block on a thread.
        reader = shared_pool("reader", READERS) if len(blocks) > 1 else None
        pending = reader.submit(self._read, 0, 0) if reader else None
        try:
            for number, block_start in enumerate(blocks):
                raws = pending.result() if pending else self._read(0, block_start)
                pending = None
                if reader and number + 1 < len(blocks):
                    following = (number + 1) % READ_SETS
                    if copied[following] is not None:
                        copied[following].synchronize()  # its bytes reached the accelerator
                    pending = reader.submit(self._read, following, blocks[number + 1])
                count = min(self.block, self.numel - block_start)
                for offset in range(0, count, self.tile):
                    start = block_start + offset
                    tensors = self._decode(raws, offset, min(self.tile, count - offset), index % 2,
                                           start if keep else None)
                    if self.buffers.accelerated:
                        copied[number % READ_SETS] = torch.cuda.Event()
                        copied[number % READ_SETS].record()
                    if keep:
                        held.append((index, start, tensors))
                    yield index, start, *self._split(tensors)
                    index += 1
        finally:
            if pending is not None:
                pending.result()  # no read may land in buffers after the stream is done with them
        if keep:
            self._held_tiles = held

    def sample(self, blocks: int, length: int) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Float32 inputs and base at `blocks` evenly spaced runs of `length` elements each."""
        length, starts = sample_starts(self.numel, blocks, length)
        values = []
        for slot, (checkpoint, name) in enumerate(self.sources):
            dtype = checkpoint.tensors[name].dtype
            size = length * itemsize(dtype)
            raw = torch.empty(len(starts) * size, dtype=torch.uint8)
            for k, start in enumerate(starts):
                self._read_range(slot, start, raw[k * size:(k + 1) * size])
            values.append(raw.view(dtype).to(self.device, torch.float32))
        return self._split(values)

    def placements(self, start: int, count: int) -> list[tuple[int, int, int]]:
        """(element in the VLM's tensor, offset in the block, length) for merged values of streamed
        elements [start, start + count)."""
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
        """(offset from `start`, element in the input, length) covering the streamed elements [start, start + count)."""
        stop = start + count
        for first_pair, first_row, length in row_runs:
            lo, hi = max(first_pair * self.row, start), min((first_pair + length) * self.row, stop)
            if lo < hi:
                yield lo - start, first_row * self.row + (lo - first_pair * self.row), hi - lo

    def _read_range(self, slot: int, start: int, raw: torch.Tensor) -> torch.Tensor:
        """The raw bytes of input `slot`'s streamed elements from `start` on, as many as `raw` holds."""
        checkpoint, name = self.sources[slot]
        row_runs = self.input_runs[slot]
        if row_runs is None:
            return checkpoint.read_into(name, start, raw)
        size = itemsize(checkpoint.tensors[name].dtype)
        for offset, element, length in self._pieces(row_runs, start, raw.numel() // size):
            checkpoint.read_into(name, element, raw[offset * size:(offset + length) * size])
        return raw

    def _read(self, read_set: int, start: int) -> list[tuple[torch.Tensor, torch.dtype]]:
        count = min(self.block, self.numel - start)
        out = []
        for slot, (checkpoint, name) in enumerate(self.sources):
            dtype = checkpoint.tensors[name].dtype
            raw = self.buffers.raw(read_set, slot, count * itemsize(dtype))
            out.append((self._read_range(slot, start, raw).view(dtype), dtype))
        return out

    def _decode(self, raws: list[tuple[torch.Tensor, torch.dtype]], offset: int, count: int, parity: int,
                held_at: int | None) -> list[torch.Tensor]:
        tensors = []
        for slot, (typed, dtype) in enumerate(raws):
            part = typed[offset:offset + count]
            if self.buffers.accelerated:
                staged = self.buffers.staged(slot, count * itemsize(dtype)).view(dtype)
                part = staged.copy_(part, non_blocking=True)
            if held_at is None:
                target = self.buffers.f32(slot, count, parity)
            else:
                target = self.buffers.held(slot, self.numel)[held_at:held_at + count]
            f32 = target.copy_(part)
            tensors.append(f32.reshape(self.shape) if self.whole else f32)
        return tensors

    def _split(self, tensors: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        if self.has_base:
            return tensors[:-1], tensors[-1]
        return tensors, None
