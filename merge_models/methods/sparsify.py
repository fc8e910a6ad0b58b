"""Sparsification of task vectors, applied tile by tile.

Magnitude methods keep entries by their rank over the whole tensor: a `RankCut` holds the value
and the tie-breaking position that separate ranks below and above a given rank (found exactly by
merge_models.methods.selection; ties are broken by flat index, so exactly the requested number of
entries is kept) and applies it to consecutive tiles. DARE masks come from a generator seeded per
(seed, tensor, input, block of CHUNK_ELEMENTS).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch


@dataclass
class RankCut:
    """Selects the entries whose ascending (value, index) rank is >= a rank, tile by tile.

    Entries above `threshold` are selected; of those equal to it, the first `skip` (in index
    order) are not. With `equal_before` (per tile, the entries equal to the threshold in the tiles
    before it) each tile is cut on its own; without it, `keep` must see the tiles in order.
    """

    threshold: float
    skip: int
    everything: bool = False
    equal_before: list[int] | None = None
    _equal_seen: int = field(default=0, repr=False)

    @classmethod
    def at(cls, rank: int, numel: int, found: tuple[float, int, list[int] | None] | None) -> "RankCut":
        """The cut at 0-based ascending `rank` (0 selects everything), given the value at that rank,
        the count of entries below it and the per-tile counts of its equals before each tile (as
        merge_models.methods.selection finds them; needed when 0 < rank < numel)."""
        if rank <= 0:
            return cls(0.0, 0, everything=True)
        if rank >= numel:
            return cls(float("inf"), 0)
        assert found is not None
        value, below, equal_before = found
        return cls(value, rank - below, equal_before=equal_before)

    @property
    def any_order(self) -> bool:
        """Whether tiles may be cut in any order (or concurrently)."""
        return self.everything or self.skip == 0 or self.equal_before is not None

    def keep(self, magnitude: torch.Tensor, out: torch.Tensor, tile: int) -> torch.Tensor:
        """1.0 where tile number `tile`'s entries are selected, else 0.0, written into `out` (float32)."""
        if self.everything:
            return out.fill_(1.0)
        seen = self._equal_seen if self.equal_before is None else self.equal_before[tile]
        if seen >= self.skip:  # past the tie boundary: every equal entry counts
            return torch.ge(magnitude, self.threshold, out=out)
        torch.gt(magnitude, self.threshold, out=out)
        equal = torch.eq(magnitude, self.threshold)
        count = int(torch.count_nonzero(equal))
        if count:
            start = self.skip - seen
            if start < count:
                out.view(-1)[equal.view(-1).nonzero().view(-1)[start:]] = 1.0
            self._equal_seen += count
        return out


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
    """A 63-bit seed determined only by the recipe seed, the tensor, the input and the block."""
    digest = hashlib.sha256(f"{seed}\0{tensor_name}\0{input_index}\0{chunk_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def dare_draws(shape: torch.Size, seed: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """The uniform [0, 1) draws behind one block's DARE mask (kept where a draw < density), on the CPU
    (into `out` when given): a function of `seed` and the shape alone."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), out=out)


def dare_keep(shape: torch.Size, density: float, seed: int, out: torch.Tensor) -> torch.Tensor:
    """DARE's Bernoulli(density) keep mask for one block as 1.0/0.0, written into `out` (any device).

    Drawn on the CPU whatever the device, so it is a function of `seed` and the shape alone.
    """
    draws = dare_draws(shape, seed, out if out.device.type == "cpu" else None)
    return out.copy_(torch.lt(draws, density, out=draws), non_blocking=True)
