"""One run's scores with the documents they rest on and their bootstrap intervals, per task and per
split (perception / reasoning): what sweep tables and figures show.

A task's interval resamples its documents as its score defines them (see stats); a split's score is
the mean of its tasks' scores over the split's documents, and its interval averages replicates
drawn for every task independently (stratified), as compare does for differences.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from harness_ext.results import stats
from harness_ext.results.record import SPLITS, RunRecord, Sample, TaskResult


@dataclass(frozen=True)
class Score:
    """A task's or a split's score (0..1), its documents and its interval (None without per-sample logs)."""

    name: str
    kind: str  # "task" or "split"
    score: float | None
    n: int | None
    low: float | None = None
    high: float | None = None


def summarize(record: RunRecord, alpha: float = 0.05, iterations: int = 2000, seed: int = 0) -> list[Score]:
    """Every task's score, then every split's, with n and the level 1 - alpha interval."""
    tasks = sorted(record.tasks.items(), key=lambda item: (_split_rank(item[1]), item[0]))
    out, replicates = [], {}
    for name, result in tasks:
        draws = _replicates(name, result, result.samples, iterations, seed)
        low, high = stats.interval(draws, alpha) if draws is not None else (None, None)
        out.append(Score(name, "task", result.score, result.n, low, high))
        replicates[name] = draws
    for split in SPLITS:
        parts = [(name, result) for name, result in tasks if split in result.split_scores]
        if not parts:
            continue
        scores = [result.split_scores[split] for _, result in parts]
        draws = [replicates[name] if result.split == split else
                 _replicates(f"{name}/{split}", result, [s for s in result.samples or [] if s.split == split],
                             iterations, seed) for name, result in parts]
        n = sum(len([s for s in r.samples or [] if s.split == split]) or (r.n or 0) for _, r in parts)
        low = high = None
        if all(d is not None for d in draws):
            low, high = stats.interval(np.mean(draws, axis=0), alpha)
        out.append(Score(split, "split", float(np.mean(scores)), n, low, high))
    return out


def _replicates(key: str, result: TaskResult, samples: list[Sample] | None, iterations: int,
                seed: int) -> np.ndarray | None:
    if not samples:
        return None
    aggregation = "micro" if result.aggregation == "unknown" else result.aggregation
    design = stats.Design.of(aggregation, [s.category for s in samples], [s.cluster for s in samples])
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    return stats.bootstrap_scores([s.value or 0.0 for s in samples], design, iterations, rng)


def _split_rank(result: TaskResult) -> int:
    return SPLITS.index(result.split) if result.split in SPLITS else len(SPLITS)
