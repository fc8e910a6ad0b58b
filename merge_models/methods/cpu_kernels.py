"""Compiled CPU loops (numba) where torch needs several passes per tile: exact rank selection, and
the task-vector arithmetic of TIES and DARE.

Counting the magnitudes |x - base| below a value and gathering the few that fall inside a window
are one fused loop here; with torch they would be a subtraction, an absolute value, comparisons
into boolean masks and a masked select, each a pass over the tile (together several times the
cost). Each function is the exact counterpart of torch operations in `merge_models.methods.selection`
or `merge_models.methods.native`, which run on other devices and serve as their test oracle (same
float32 operations in the same order, so the same bits). Compiled on first use and cached on disk.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numba import njit


def compiled(function: Callable) -> Callable:
    """`function` compiled without the GIL, cached on disk when numba finds a writable place for it.
    Division follows IEEE (numpy's error model) rather than raising on zero, as torch's does, and loops
    with a division vectorise."""
    try:
        return njit(cache=True, nogil=True, error_model="numpy")(function)
    except RuntimeError:  # no writable cache directory (read-only install, no home): compile each run
        return njit(cache=False, nogil=True, error_model="numpy")(function)


@compiled
def magnitudes(x: np.ndarray, base: np.ndarray, out: np.ndarray) -> None:
    """out = |x - base|, elementwise, in float32."""
    for j in range(x.shape[0]):
        out[j] = abs(x[j] - base[j])


@compiled
def window_scan(magnitude: np.ndarray, lo: np.float32, hi: np.float32, counts: np.ndarray,
                gathered: np.ndarray, filled: int) -> int:
    """Count magnitudes below `lo`, equal to `lo`, equal to `hi` and below `hi` (into counts[0..3])
    and append those strictly between `lo` and `hi` to `gathered` from position `filled`, as far
    as it has room. Returns the new fill count (beyond gathered's length when it ran out of room).

    Two loops: the counts vectorise; the gathering tests one unsigned difference of bit patterns
    (non-negative float32 values order like their bit patterns), a branch that is rarely taken.
    """
    below_lo = 0
    equal_lo = 0
    equal_hi = 0
    below_hi = 0
    for j in range(magnitude.shape[0]):
        m = magnitude[j]
        below_lo += m < lo
        equal_lo += m == lo
        equal_hi += m == hi
        below_hi += m < hi
    counts[0] += below_lo
    counts[1] += equal_lo
    counts[2] += equal_hi
    counts[3] += below_hi
    bits = magnitude.view(np.int32)
    out = gathered.view(np.int32)
    first = np.int32(np.array([lo], dtype=np.float32).view(np.int32)[0]) + np.int32(1)
    span = np.int32(np.array([hi], dtype=np.float32).view(np.int32)[0]) - first
    width = np.uint32(max(span, 0))
    room = out.shape[0]
    for j in range(bits.shape[0]):
        if np.uint32(bits[j] - first) < width:  # lo < m < hi
            if filled < room:
                out[filled] = bits[j]
            filled += 1
    return filled


@compiled
def histogram_top(bits: np.ndarray, counts: np.ndarray) -> None:
    """counts[k] += number of entries whose bit pattern's top 16 bits are k."""
    for j in range(bits.shape[0]):
        counts[bits[j] >> 16] += 1


@compiled
def histogram_low(bits: np.ndarray, bucket: int, counts: np.ndarray) -> None:
    """counts[k] += number of entries whose top 16 bits are `bucket` and low 16 bits are k."""
    for j in range(bits.shape[0]):
        if bits[j] >> 16 == bucket:
            counts[bits[j] & 0xFFFF] += 1


@compiled
def task_vector(x: np.ndarray, base: np.ndarray, masked: bool, draws: np.ndarray, density: np.float32,
                divisor: np.float32, factor: np.float32, weight: np.float32) -> None:
    """x = (x - base) * keep / divisor * factor * weight in place, keep = 1 where draws < density (else 0) when
    `masked`; in float32, one rounding per operation, in that order (as the torch operations of
    TaskVectorMethod; a division or multiplication by 1 is exact, so callers pass 1 to skip one)."""
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for j in range(x.shape[0]):
        delta = x[j] - base[j]
        if masked:
            delta = delta * (one if draws[j] < density else zero)
        x[j] = ((delta / divisor) * factor) * weight


# Elements per strip of elect_sum: its per-element temporaries stay in the first-level cache.
STRIP = 2048


@compiled
def elect_sum(deltas: tuple, weights: np.ndarray, weighted: bool, alphas: np.ndarray, divide: bool,
              lam: np.float32, base: np.ndarray, out: np.ndarray) -> None:
    """out = lam * disjoint_sum(deltas) + base in float32, elementwise, as merge_models.methods.native's
    torch operations compute it (its `_disjoint_sum`, the sign elected from the sum of `deltas`):
    an entry counts where its sign agrees with the sum's (>= 0 counts as +); unless `weighted`
    (deltas already weighted) it is weighted after the vote; with `divide`, the sum is divided by
    the `alphas` of the agreeing inputs (1 where none agrees). Strip by strip, each loop over
    consecutive elements (so they vectorise)."""
    one = np.float32(1.0)
    zero = np.float32(0.0)
    sign = np.empty(STRIP, np.float32)
    mixed = np.empty(STRIP, np.float32)
    count = np.empty(STRIP, np.float32)
    for start in range(0, out.shape[0], STRIP):
        m = min(STRIP, out.shape[0] - start)
        first = deltas[0]
        for j in range(m):
            mixed[j] = first[start + j]  # the vote, summed in input order
        for i in range(1, len(deltas)):
            delta = deltas[i]
            for j in range(m):
                mixed[j] = mixed[j] + delta[start + j]
        for j in range(m):
            sign[j] = one if mixed[j] >= zero else -one
            mixed[j] = zero
            count[j] = zero
        for i in range(len(deltas)):
            delta = deltas[i]
            weight = one if weighted else weights[i]
            alpha = alphas[i]
            for j in range(m):
                value = delta[start + j]
                agree = one if value * sign[j] > zero else zero
                mixed[j] = mixed[j] + (value * weight) * agree
                count[j] = count[j] + alpha * agree
        if divide:
            for j in range(m):
                mixed[j] = mixed[j] / (count[j] + (one if count[j] == zero else zero))
        for j in range(m):
            out[start + j] = mixed[j] * lam + base[start + j]
