"""Compiled CPU loops for exact rank selection (numba), where torch needs several passes per tile.

Counting the magnitudes |x - base| below a value and gathering the few that fall inside a window
are one fused loop here; with torch they would be a subtraction, an absolute value, comparisons
into boolean masks and a masked select, each a pass over the tile (together several times the
cost). Each function is the exact counterpart of one in `merge_models.methods.selection`, which
runs on other devices and serves as their test oracle. Compiled on first use and cached on disk.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numba import njit


def compiled(function: Callable) -> Callable:
    """`function` compiled without the GIL, cached on disk when numba finds a writable place for it."""
    try:
        return njit(cache=True, nogil=True)(function)
    except RuntimeError:  # no writable cache directory (read-only install, no home): compile each run
        return njit(cache=False, nogil=True)(function)


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
