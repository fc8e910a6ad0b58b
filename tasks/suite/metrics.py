"""Aggregations over per-sample records (see `common.record`); referenced from the task YAMLs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from statistics import fmean
from typing import Any

Record = dict[str, Any]


def _grouped(records: Iterable[Record], key: str) -> dict[Any, list[bool]]:
    groups: dict[Any, list[bool]] = defaultdict(list)
    for item in records:
        groups[item[key]].append(bool(item["correct"]))
    return dict(groups)


def micro_accuracy(records: Sequence[Record]) -> float:
    """Share of samples answered correctly."""
    return fmean(bool(item["correct"]) for item in records)


def category_accuracy(records: Sequence[Record]) -> dict[str, float]:
    """Accuracy of each category, categories sorted by name."""
    return {category: fmean(hits) for category, hits in sorted(_grouped(records, "category").items())}


def macro_accuracy(records: Sequence[Record]) -> float:
    """Mean over categories of the per-category accuracy (MMStar's official score)."""
    return fmean(category_accuracy(records).values())


def seed_average_accuracy(records: Sequence[Record]) -> float:
    """DynaMath average-case accuracy: mean over seed questions of the accuracy over their variants."""
    return fmean(fmean(hits) for hits in _grouped(records, "seed").values())


def seed_worst_accuracy(records: Sequence[Record]) -> float:
    """DynaMath worst-case accuracy: share of seed questions answered correctly in every variant."""
    return fmean(all(hits) for hits in _grouped(records, "seed").values())
