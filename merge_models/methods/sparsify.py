"""Sparsification of task vectors, applied chunk by chunk.

Magnitude methods need global thresholds: `rank_cut` finds, exactly, the value and the
tie-breaking position that separate ranks below and above a given rank (ties are broken by
flat index, so exactly the requested number of entries is kept). `RankCut.mask` then applies it
to consecutive chunks. DARE masks come from a generator seeded per (seed, tensor, input, chunk).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

_EXACT_BELOW = 1 << 20
_SAMPLE = 1 << 16


def kth_smallest(values: torch.Tensor, rank: int) -> tuple[float, int]:
    """The value at 1-based `rank` in ascending order of a flat tensor, and how many entries lie below it.

    Exact. For large tensors a deterministic sample brackets the answer; one pass counts what lies
    below the bracket and gathers what lies inside it, and the selection runs on the bracket alone.
    """
    n = values.numel()
    if n > _EXACT_BELOW:
        generator = torch.Generator().manual_seed(n)
        sample, _ = torch.sort(values[torch.randint(n, (_SAMPLE,), generator=generator)])
        position = rank / n * _SAMPLE
        margin = 4 * (_SAMPLE**0.5) + 8
        lo = float(sample[max(int(position - margin), 0)])
        hi = float(sample[min(int(position + margin), _SAMPLE - 1)])
        array = values.numpy()
        below = int(np.count_nonzero(array < lo))
        inside = torch.from_numpy(array[np.flatnonzero((array >= lo) & (array <= hi))])
        if below < rank <= below + inside.numel():
            value = torch.kthvalue(inside, rank - below).values
            return float(value), below + int(torch.count_nonzero(inside < value))
    value = torch.kthvalue(values, rank).values
    return float(value), int(torch.count_nonzero(values < value))


@dataclass
class RankCut:
    """Selects the entries whose ascending (value, index) rank is >= `rank`, chunk by chunk.

    Entries above `threshold` are selected; of those equal to it, the first `skip` (in index
    order) are not. `mask` must see the chunks in order.
    """

    threshold: float
    skip: int
    everything: bool = False
    _equal_seen: int = field(default=0, repr=False)

    def mask(self, magnitude: torch.Tensor) -> torch.Tensor:
        if self.everything:
            return torch.ones_like(magnitude, dtype=torch.bool)
        mask = magnitude > self.threshold
        if self._equal_seen >= self.skip and self._equal_seen:
            return mask.logical_or_(magnitude == self.threshold)  # past the tie boundary: all equal ones count
        equal = magnitude == self.threshold
        count = int(torch.count_nonzero(equal))
        if count:
            start = self.skip - self._equal_seen
            if start <= 0:
                mask.logical_or_(equal)
            elif start < count:
                mask[equal.nonzero().reshape(-1)[start:]] = True
            self._equal_seen += count
        return mask


def rank_cut(magnitude: torch.Tensor, rank: int) -> RankCut:
    """The cut at 0-based ascending `rank` of a flat tensor (rank 0 selects everything)."""
    if rank <= 0:
        return RankCut(0.0, 0, everything=True)
    if rank >= magnitude.numel():
        return RankCut(float("inf"), 0)
    threshold, below = kth_smallest(magnitude, rank + 1)
    return RankCut(threshold, rank - below)


def rank_band_mask(magnitude: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Boolean mask of the entries whose ascending (magnitude, index) rank lies in [start, stop)."""
    flat = magnitude.reshape(-1)
    if stop <= start:
        return torch.zeros_like(magnitude, dtype=torch.bool)
    mask = rank_cut(flat, start).mask(flat)
    if stop < flat.numel():
        mask &= ~rank_cut(flat, stop).mask(flat)
    return mask.reshape(magnitude.shape)


def topk_start(numel: int, density: float, minimum: int = 1) -> int:
    """First kept rank of TIES trimming: keep the max(minimum, int(density * n)) largest entries.

    minimum 1 is mergekit's rule (it refuses to keep none); the paper's code (PEFT's magnitude
    pruning) keeps exactly int(density * n), which is 0 for tensors with fewer than 1/density entries.
    """
    return max(numel - max(minimum, int(density * numel)), 0)


def band_ranks(numel: int, density: float, gamma: float) -> tuple[int, int]:
    """Model Breadcrumbs: drop the `gamma` fraction of largest entries and the smallest; keep `density`."""
    keep = int(density * numel)
    bottom = max(0, numel - keep - int(gamma * numel))
    return bottom, bottom + keep


def chunk_seed(seed: int, tensor_name: str, input_index: int, chunk_index: int) -> int:
    """A 63-bit seed determined only by the recipe seed, the tensor, the input and the chunk."""
    digest = hashlib.sha256(f"{seed}\0{tensor_name}\0{input_index}\0{chunk_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def dare_keep(shape: torch.Size, density: float, seed: int) -> torch.Tensor:
    """DARE's Bernoulli(density) keep mask for one chunk; a function of `seed` and the shape alone."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator) < density
