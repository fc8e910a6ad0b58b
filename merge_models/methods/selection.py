"""Exact ranks of task-vector magnitudes over a tensor streamed in tiles: TIES and Breadcrumbs cut-offs.

Trimming keeps an input's entries by the rank of |theta_i - theta_base| over the whole tensor, so
it needs the magnitude at a given rank and how many entries lie below it, while only one tile is
in memory. Tensors of up to EXACT_ELEMENTS are ranked directly. For larger ones a sample of evenly
spaced runs places a window [lo, hi] around each wanted rank's value; one pass counts the entries
below `lo`, equal to `lo` and to `hi`, and gathers those strictly inside (a small, bounded set),
which settles the rank exactly whenever it falls in the window. Otherwise two radix passes settle
it: counts of the top 16 bits of the float32 bit pattern (ordered like the non-negative values),
then of the low 16 bits inside the chosen bucket. On the CPU the scans are compiled loops
(merge_models.methods.cpu_kernels); elsewhere they are torch operations on the merge device.

Along with each value comes, when the pass that settled it could tell, how many entries equal to
it each tile is preceded by: with it, every tile knows on its own which of its tied entries the
cut keeps, so tiles can be combined in any order (or at once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import torch

from merge_models.runtime import shared_pool

EXACT_ELEMENTS = 1 << 21
SAMPLE_RUN = 256
GATHER_LIMIT = 1 << 23
BUCKETS = 1 << 16


class MagnitudeSource(Protocol):
    """What selection reads: float32 tiles of the inputs and base, and evenly spaced samples."""

    numel: int
    device: torch.device

    def chunks(self, hold: bool = False) -> Iterator[tuple[int, int, list[torch.Tensor], torch.Tensor | None]]: ...

    def sample(self, blocks: int, length: int) -> tuple[list[torch.Tensor], torch.Tensor | None]: ...


@dataclass
class Query:
    """One wanted 1-based ascending rank of one input's magnitudes, and what is known about it."""

    input: int
    rank: int
    lo: float = 0.0
    hi: float = 0.0
    counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # < lo, == lo, == hi, < hi
    gathered: Any = None
    filled: int = 0
    bucket: int = 0
    below_bucket: int = 0
    histogram: Any = None
    after_tile: list[tuple[int, int, int]] = field(default_factory=list)  # (== lo, == hi, gathered) so far
    result: tuple[float, int, list[int] | None] | None = None


def select_magnitudes(source: MagnitudeSource, wanted: list[list[int]], scanner: "CpuScanner | TorchScanner | None"
                      = None) -> list[list[tuple[float, int, list[int] | None]]]:
    """For input i and each 1-based rank r in wanted[i] (1 <= r <= numel): the r-th smallest
    |x_i - base| over the whole tensor, the number of entries strictly below it, and for each tile
    the number of entries equal to it in the tiles before (None when not known).

    `scanner` defaults to the compiled loops on the CPU and torch operations elsewhere.
    """
    queries = [Query(i, r) for i, ranks in enumerate(wanted) for r in ranks]
    if queries and source.numel <= EXACT_ELEMENTS:
        _direct(source, queries)
    elif queries:
        scan = scanner or (CpuScanner() if source.device.type == "cpu" else TorchScanner())
        _windowed(source, queries, scan)
        missed = [q for q in queries if q.result is None]
        if missed:
            _radix(source, missed, scan)
    found = iter(queries)
    return [[next(found).result for _ in ranks] for ranks in wanted]  # type: ignore[misc]


def _direct(source: MagnitudeSource, queries: list[Query]) -> None:
    needed = sorted({q.input for q in queries})
    whole: dict[int, torch.Tensor] = {}
    tiles = []
    for _, start, inputs, base in source.chunks(hold=True):
        tiles.append((start, base.numel()))
        for i in needed:
            if i not in whole:
                whole[i] = torch.empty(source.numel, device=inputs[i].device)
            torch.sub(inputs[i].reshape(-1), base.reshape(-1), out=whole[i][start:start + inputs[i].numel()]).abs_()
    for q in queries:
        magnitude = whole[q.input]
        value = torch.kthvalue(magnitude, q.rank).values
        equal = [int(torch.count_nonzero(magnitude[start:start + count] == value)) for start, count in tiles]
        q.result = float(value), int(torch.count_nonzero(magnitude < value)), _before(equal)


def _before(per_tile: list[int]) -> list[int]:
    """Exclusive running sums: for each tile, the total of the tiles before it."""
    return [int(total) for total in np.concatenate([[0], np.cumsum(per_tile)[:-1]])] if per_tile else []


def _windowed(source: MagnitudeSource, queries: list[Query], scan: "CpuScanner | TorchScanner") -> None:
    n = source.numel
    blocks = min(max(n // (128 * SAMPLE_RUN), 256), 4096)
    inputs, base = source.sample(blocks, SAMPLE_RUN)
    for q in queries:
        sample = (inputs[q.input] - base).abs_().reshape(-1)
        size = sample.numel()
        share = q.rank / n
        margin = 6 * math.sqrt(size * share * (1 - share)) + 64
        low = min(max(int(share * size - margin), 0), size - 1)
        high = min(max(int(math.ceil(share * size + margin)), 0), size - 1)
        q.lo, q.hi = (float(torch.kthvalue(sample, k + 1).values) for k in (low, high))  # sample order statistics
        if not q.hi > q.lo:
            q.hi = float(np.nextafter(np.float32(q.lo), np.float32(np.inf)))

    def window(i: int, inputs: list[torch.Tensor], base: torch.Tensor) -> None:
        magnitude = scan.magnitudes(inputs[i], base, i)
        for q in (q for q in queries if q.input == i):
            scan.window(magnitude, q)
            q.after_tile.append((int(q.counts[1]), int(q.counts[2]), q.filled))

    _each_tile_and_input(source, scan, sorted({q.input for q in queries}), window)
    for q in queries:
        below_lo, equal_lo, equal_hi, below_hi = (int(c) for c in q.counts)
        inside = below_hi - below_lo - equal_lo
        if q.filled != inside or inside > GATHER_LIMIT or q.rank <= below_lo:
            continue  # the window overflowed or missed the rank: left to the radix passes
        so_far = np.array([(0, 0, 0)] + q.after_tile)
        if q.rank <= below_lo + equal_lo:
            q.result = q.lo, below_lo, [int(c) for c in so_far[:-1, 0]]
        elif q.rank <= below_hi:
            gathered = scan.gathered(q)
            value = torch.kthvalue(gathered, q.rank - below_lo - equal_lo).values
            equal = [int(torch.count_nonzero(gathered[a:b] == value)) for a, b in zip(so_far[:-1, 2], so_far[1:, 2])]
            q.result = float(value), below_lo + equal_lo + int(torch.count_nonzero(gathered < value)), _before(equal)
        elif q.rank <= below_hi + equal_hi:
            q.result = q.hi, below_hi, [int(c) for c in so_far[:-1, 1]]


def _radix(source: MagnitudeSource, queries: list[Query], scan: "CpuScanner | TorchScanner") -> None:
    tops = {i: scan.counter() for i in {q.input for q in queries}}
    _each_tile_and_input(source, scan, sorted(tops), lambda i, inputs, base: scan.histogram_top(
        scan.magnitudes(inputs[i], base, i), tops[i]))
    for q in queries:
        cumulative = np.cumsum(scan.numpy(tops[q.input]))
        q.bucket = int(np.searchsorted(cumulative, q.rank))
        q.below_bucket = int(cumulative[q.bucket - 1]) if q.bucket else 0
        q.histogram = scan.counter()

    def low(i: int, inputs: list[torch.Tensor], base: torch.Tensor) -> None:
        magnitude = scan.magnitudes(inputs[i], base, i)
        for q in (q for q in queries if q.input == i):
            scan.histogram_low(magnitude, q.bucket, q.histogram)

    _each_tile_and_input(source, scan, sorted(tops), low)
    for q in queries:
        cumulative = q.below_bucket + np.cumsum(scan.numpy(q.histogram))
        low = int(np.searchsorted(cumulative, q.rank))
        bits = np.array([(q.bucket << 16) | low], dtype=np.int32)
        below = int(cumulative[low - 1]) if low else q.below_bucket
        q.result = float(bits.view(np.float32)[0]), below, None  # ties are then placed tile by tile, in order


def _each_tile_and_input(source: MagnitudeSource, scan: "CpuScanner | TorchScanner", inputs: list[int],
                         work: Callable[[int, list[torch.Tensor], torch.Tensor], None]) -> None:
    """One pass: work(input index, input tiles, base tile) for every tile and input, the inputs of a
    tile at once on `scan.threads` threads."""
    if scan.threads == 1 or len(inputs) == 1:
        for _, _, tiles, base in source.chunks(hold=True):
            for i in inputs:
                work(i, tiles, base)
        return
    pool = shared_pool("select", scan.threads)
    for _, _, tiles, base in source.chunks(hold=True):
        for done in [pool.submit(work, i, tiles, base) for i in inputs]:
            done.result()


class TorchScanner:
    """The scans as torch operations, on any device (the oracle of the compiled CPU loops)."""

    threads = 1

    def magnitudes(self, x: torch.Tensor, base: torch.Tensor, slot: int = 0) -> torch.Tensor:
        return (x.reshape(-1) - base.reshape(-1)).abs_()

    def window(self, magnitude: torch.Tensor, q: Query) -> None:
        lo, hi = q.lo, q.hi
        for k, count in enumerate(((magnitude < lo), (magnitude == lo), (magnitude == hi), (magnitude < hi))):
            q.counts[k] += int(torch.count_nonzero(count))
        inside = magnitude[(magnitude > lo) & (magnitude < hi)]
        if q.filled + inside.numel() <= GATHER_LIMIT:
            q.gathered = inside if q.gathered is None else torch.cat([q.gathered, inside])
        q.filled += inside.numel()

    def gathered(self, q: Query) -> torch.Tensor:
        return q.gathered if q.gathered is not None else torch.empty(0)

    def counter(self) -> torch.Tensor:
        return torch.zeros(BUCKETS, dtype=torch.int64)

    def histogram_top(self, magnitude: torch.Tensor, counts: torch.Tensor) -> None:
        top = magnitude.view(torch.int32) >> 16
        counts += torch.bincount(top, minlength=BUCKETS).cpu()

    def histogram_low(self, magnitude: torch.Tensor, bucket: int, counts: torch.Tensor) -> None:
        bits = magnitude.view(torch.int32)
        low = bits[(bits >> 16) == bucket] & 0xFFFF
        counts += torch.bincount(low, minlength=BUCKETS).cpu()

    @staticmethod
    def numpy(counts: torch.Tensor) -> np.ndarray:
        return counts.numpy()


class CpuScanner:
    """The scans as compiled loops over CPU tiles."""

    threads = 2  # inputs scanned at once (the loops release the GIL)

    def __init__(self) -> None:
        from merge_models.methods import cpu_kernels

        self.kernels = cpu_kernels
        self._scratch: dict[int, np.ndarray] = {}

    def magnitudes(self, x: torch.Tensor, base: torch.Tensor, slot: int = 0) -> np.ndarray:
        count = x.numel()
        if slot not in self._scratch or self._scratch[slot].shape[0] < count:
            self._scratch[slot] = np.empty(count, dtype=np.float32)
        out = self._scratch[slot][:count]
        self.kernels.magnitudes(x.reshape(-1).numpy(), base.reshape(-1).numpy(), out)
        return out

    def window(self, magnitude: np.ndarray, q: Query) -> None:
        if q.gathered is None:
            q.gathered = np.empty(1 << 16, dtype=np.float32)
            q.counts = np.zeros(4, dtype=np.int64)
        room = q.gathered.shape[0]
        if q.filled + magnitude.shape[0] > room and room < GATHER_LIMIT:
            grown = np.empty(min(max(2 * room, q.filled + magnitude.shape[0]), GATHER_LIMIT), dtype=np.float32)
            grown[:q.filled] = q.gathered[:q.filled]
            q.gathered = grown
        q.filled = self.kernels.window_scan(magnitude, np.float32(q.lo), np.float32(q.hi), q.counts,
                                            q.gathered, q.filled)

    def gathered(self, q: Query) -> torch.Tensor:
        return torch.from_numpy(q.gathered[:q.filled])

    def counter(self) -> np.ndarray:
        return np.zeros(BUCKETS, dtype=np.int64)

    def histogram_top(self, magnitude: np.ndarray, counts: np.ndarray) -> None:
        self.kernels.histogram_top(magnitude.view(np.int32), counts)

    def histogram_low(self, magnitude: np.ndarray, bucket: int, counts: np.ndarray) -> None:
        self.kernels.histogram_low(magnitude.view(np.int32), bucket, counts)

    @staticmethod
    def numpy(counts: np.ndarray) -> np.ndarray:
        return counts
