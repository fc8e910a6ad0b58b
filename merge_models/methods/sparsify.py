"""Sparsification of task vectors: exact magnitude top-k, magnitude bands, and DARE drops.

All functions take and return float32 tensors and never modify their input.
"""

from __future__ import annotations

import hashlib

import torch

_EXACT_BELOW = 1 << 20
_SAMPLE = 1 << 16


def kth_smallest(values: torch.Tensor, rank: int) -> torch.Tensor:
    """The value of 1-based `rank` in ascending order of a flat tensor, computed exactly.

    For large tensors a deterministic sample brackets the answer, one vectorised pass counts
    what lies below the bracket, and the exact selection runs on the bracket alone.
    """
    n = values.numel()
    if n <= _EXACT_BELOW:
        return torch.kthvalue(values, rank).values
    generator = torch.Generator().manual_seed(n)
    sample = values[torch.randint(n, (_SAMPLE,), generator=generator)]
    sample, _ = torch.sort(sample)
    position = rank / n * _SAMPLE
    margin = 4 * (_SAMPLE**0.5) + 8
    lo = sample[max(int(position - margin), 0)]
    hi = sample[min(int(position + margin), _SAMPLE - 1)]
    below = int((values < lo).sum())
    inside = values[(values >= lo) & (values <= hi)]
    if below < rank <= below + inside.numel():
        return torch.kthvalue(inside, rank - below).values
    return torch.kthvalue(values, rank).values


def rank_band_mask(magnitude: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Boolean mask of the elements whose ascending magnitude rank lies in [start, stop).

    Ranks are taken over (magnitude, flat index), so ties resolve by position and the mask
    holds exactly stop - start elements.
    """
    flat = magnitude.reshape(-1)
    n = flat.numel()
    start, stop = max(start, 0), min(stop, n)
    if stop <= start:
        return torch.zeros_like(magnitude, dtype=torch.bool)
    if start == 0 and stop == n:
        return torch.ones_like(magnitude, dtype=torch.bool)
    mask = torch.ones(n, dtype=torch.bool)
    if start > 0:
        mask &= _at_or_above_rank(flat, start)
    if stop < n:
        mask &= ~_at_or_above_rank(flat, stop)
    return mask.reshape(magnitude.shape)


def _at_or_above_rank(flat: torch.Tensor, rank: int) -> torch.Tensor:
    """Mask of elements with 0-based ascending rank >= `rank` (ties broken by index)."""
    threshold = kth_smallest(flat, rank + 1)
    mask = flat > threshold
    equal = (flat == threshold).nonzero().reshape(-1)
    below_count = int((flat < threshold).sum())
    # Of the elements equal to the threshold, the first (rank - below_count) by index rank lower.
    mask[equal[rank - below_count :]] = True
    return mask


def magnitude_topk(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the max(1, int(density * n)) largest-magnitude entries (TIES trimming)."""
    if density >= 1:
        return delta.clone()
    n = delta.numel()
    keep = max(1, int(density * n))
    return delta * rank_band_mask(delta.abs(), n - keep, n)


def magnitude_band(delta: torch.Tensor, density: float, gamma: float) -> torch.Tensor:
    """Model Breadcrumbs: drop the `gamma` fraction of largest entries and the smallest, keep `density`."""
    if density >= 1:
        return delta.clone()
    n = delta.numel()
    keep = int(density * n)
    top = int(gamma * n)
    bottom = max(0, n - keep - top)
    return delta * rank_band_mask(delta.abs(), bottom, bottom + keep)


def tensor_seed(seed: int, tensor_name: str, input_index: int) -> int:
    """A 63-bit seed determined only by the recipe seed, the tensor name and the input."""
    digest = hashlib.sha256(f"{seed}\0{tensor_name}\0{input_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def dare_drop(delta: torch.Tensor, density: float, seed: int, rescale: str) -> torch.Tensor:
    """DARE: keep each entry with probability `density`, then rescale.

    rescale "inverse_density" divides kept entries by density (the DARE paper); "l1" matches the
    L1 norm of the input (mergekit's choice); "none" leaves kept entries as they are.
    The mask depends only on `seed` and the shape, never on thread count or call order.
    """
    if density >= 1:
        return delta.clone()
    generator = torch.Generator().manual_seed(seed)
    keep = torch.rand(delta.shape, generator=generator) < density
    kept = delta * keep
    if rescale == "inverse_density":
        return kept.div_(density)
    if rescale == "l1":
        before, after = delta.abs().sum(), kept.abs().sum()
        if before < 1e-7 or after < 1e-7:
            return kept
        return kept.mul_(before / after)
    return kept
