"""Scores from per-sample values, the paired bootstrap of a score difference, and McNemar's test.

Every task score is a ratio of weighted sums, so one formulation covers all three aggregations:
documents (or clusters of them) are resampling units, each unit puts its value into a bucket, and a
score is the mean over buckets of sum(values) / count. `micro`: one bucket, a unit per document.
`macro` (MMStar): a bucket per category. `cluster_mean` (DynaMath): a unit per seed question whose
value is the mean over its variants. A bootstrap replicate redraws the units with replacement; since
both runs are scored on the same redraw, the replicate's difference is paired.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EXACT_BELOW = 25  # McNemar: the exact binomial test below this many discordant pairs, chi-square above
CHUNK = 512  # bootstrap replicates drawn at a time


@dataclass(frozen=True)
class Design:
    """Documents laid out as resampling units (rows) by buckets (columns)."""

    unit_of: np.ndarray  # unit index of each document
    bucket_of_unit: np.ndarray  # bucket index of each unit
    unit_size: np.ndarray  # documents per unit
    buckets: int
    aggregation: str

    @classmethod
    def of(cls, aggregation: str, categories: Sequence[str | None], clusters: Sequence[str | None]) -> Design:
        """The layout of documents with these categories and clusters under `aggregation`."""
        if aggregation == "cluster_mean":
            keys = [c if c is not None else f"\0{i}" for i, c in enumerate(clusters)]
        else:
            keys = list(range(len(categories)))
        unit_ids: dict[object, int] = {}
        unit_of = np.array([unit_ids.setdefault(k, len(unit_ids)) for k in keys], dtype=np.int64)
        if aggregation == "macro":  # a unit per document, a bucket per category
            bucket_ids: dict[object, int] = {}
            bucket_of_unit = np.array([bucket_ids.setdefault(c, len(bucket_ids)) for c in categories], dtype=np.int64)
            buckets = len(bucket_ids)
        else:
            bucket_of_unit, buckets = np.zeros(len(unit_ids), dtype=np.int64), 1
        unit_size = np.bincount(unit_of, minlength=len(unit_ids)).astype(float)
        return cls(unit_of, bucket_of_unit, unit_size, max(buckets, 1), aggregation)

    @property
    def units(self) -> int:
        return len(self.unit_size)

    def sums(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per unit and bucket: the summed values and the counts (units x buckets)."""
        unit_values = np.bincount(self.unit_of, weights=values, minlength=self.units)
        counts = np.ones(self.units) if self.aggregation == "cluster_mean" else self.unit_size
        if self.aggregation == "cluster_mean":
            unit_values = unit_values / self.unit_size
        sums = np.zeros((self.units, self.buckets))
        count = np.zeros((self.units, self.buckets))
        rows = np.arange(self.units)
        sums[rows, self.bucket_of_unit] = unit_values
        count[rows, self.bucket_of_unit] = counts
        return sums, count


def _ratio_mean(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean over buckets of sums / counts, skipping buckets a replicate left empty (rows: replicates)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.where(counts > 0, sums / np.where(counts > 0, counts, 1), np.nan)
    filled = (counts > 0).sum(axis=1)
    return np.where(filled > 0, np.nansum(ratios, axis=1) / np.maximum(filled, 1), np.nan)


def score(values: Sequence[float], aggregation: str, categories: Sequence[str | None],
          clusters: Sequence[str | None]) -> float:
    """The task score of per-document values under `aggregation`."""
    if not len(values):
        return float("nan")
    design = Design.of(aggregation, categories, clusters)
    sums, counts = design.sums(np.asarray(values, dtype=float))
    return float(_ratio_mean(sums.sum(axis=0, keepdims=True), counts.sum(axis=0, keepdims=True))[0])


def bootstrap_deltas(a: Sequence[float], b: Sequence[float], design: Design, iterations: int,
                     rng: np.random.Generator) -> np.ndarray:
    """`iterations` paired bootstrap replicates of score(b) - score(a)."""
    sums, counts = design.sums(np.asarray(b, dtype=float) - np.asarray(a, dtype=float))
    k = design.units
    out = np.empty(iterations)
    for start in range(0, iterations, CHUNK):
        size = min(CHUNK, iterations - start)
        draws = rng.integers(0, k, size=(size, k)) + (np.arange(size) * k)[:, None]
        weights = np.bincount(draws.ravel(), minlength=size * k).reshape(size, k).astype(float)
        out[start:start + size] = _ratio_mean(weights @ sums, weights @ counts)
    return out


def bootstrap_scores(values: Sequence[float], design: Design, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """`iterations` bootstrap replicates of one run's score."""
    return bootstrap_deltas(np.zeros(len(values)), values, design, iterations, rng)


def interval(deltas: np.ndarray, alpha: float) -> tuple[float, float]:
    """The percentile interval of level 1 - alpha."""
    low, high = np.nanpercentile(deltas, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


@dataclass(frozen=True)
class McNemar:
    """McNemar's test on paired verdicts: `a_only` right only in A, `b_only` right only in B."""

    a_only: int
    b_only: int
    p: float
    test: str  # "exact" (binomial), "chi2" (with continuity correction) or "none" (no discordant pair)


def mcnemar(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> McNemar:
    """Two-sided McNemar test; exact binomial below EXACT_BELOW discordant pairs."""
    from scipy import stats

    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = a_only + b_only
    if discordant == 0:
        return McNemar(a_only, b_only, 1.0, "none")
    if discordant < EXACT_BELOW:
        return McNemar(a_only, b_only, float(stats.binomtest(a_only, discordant, 0.5).pvalue), "exact")
    statistic = (abs(a_only - b_only) - 1) ** 2 / discordant
    return McNemar(a_only, b_only, float(stats.chi2.sf(statistic, 1)), "chi2")
