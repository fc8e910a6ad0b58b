"""A small seeded random source whose draws are the same on every Python version and machine.

Only `random.Random.random()` is used: Python guarantees that its sequence for a given seed stays the
same across versions, which it does not promise for `randrange`, `choice` or `shuffle`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


class Rng:
    """Random draws seeded by a string key (e.g. "eval/perception/2025/17")."""

    def __init__(self, key: str) -> None:
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        self._random = random.Random(int.from_bytes(digest[:8], "big"))

    def randint(self, low: int, high: int) -> int:
        """An integer in [low, high], both ends included."""
        if high < low:
            raise ValueError(f"empty range [{low}, {high}]")
        return low + int(self._random.random() * (high - low + 1))

    def choice(self, options: Sequence[T]) -> T:
        """One element of `options`."""
        return options[self.randint(0, len(options) - 1)]

    def sample(self, options: Sequence[T], k: int) -> list[T]:
        """`k` distinct elements of `options`, in random order."""
        if not 0 <= k <= len(options):
            raise ValueError(f"cannot draw {k} of {len(options)} options")
        pool = list(options)
        for i in range(k):
            j = self.randint(i, len(pool) - 1)
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:k]
