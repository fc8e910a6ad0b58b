"""Aggregations over per-sample records (see `common.record`); referenced from the task YAMLs.

Each aggregation reads a record's `correct` (the default, official protocol); the `strict_*` ones
read `verdicts["strict"]["correct"]` instead (the score under the strict protocol).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from statistics import fmean
from typing import Any

from mvlm_tasks.scoring import STRICT

Record = dict[str, Any]


def _correct(item: Record, protocol: str | None) -> bool:
    if protocol is None:
        return bool(item["correct"])
    return bool(item["verdicts"][protocol]["correct"])


def _grouped(records: Iterable[Record], key: str, protocol: str | None = None) -> dict[Any, list[bool]]:
    groups: dict[Any, list[bool]] = defaultdict(list)
    for item in records:
        groups[item[key]].append(_correct(item, protocol))
    return dict(groups)


def micro_accuracy(records: Sequence[Record], protocol: str | None = None) -> float:
    """Share of samples answered correctly."""
    return fmean(_correct(item, protocol) for item in records)


def category_accuracy(records: Sequence[Record], protocol: str | None = None) -> dict[str, float]:
    """Accuracy of each category, categories sorted by name."""
    grouped = _grouped(records, "category", protocol)
    return {category: fmean(hits) for category, hits in sorted(grouped.items())}


def macro_accuracy(records: Sequence[Record], protocol: str | None = None) -> float:
    """Mean over categories of the per-category accuracy (MMStar's official score)."""
    return fmean(category_accuracy(records, protocol).values())


def seed_average_accuracy(records: Sequence[Record], protocol: str | None = None) -> float:
    """DynaMath average-case accuracy: mean over seed questions of the accuracy over their variants
    (equal to the accuracy over all variants when every seed has all ten)."""
    return fmean(fmean(hits) for hits in _grouped(records, "seed", protocol).values())


def seed_worst_accuracy(records: Sequence[Record]) -> float:
    """DynaMath worst-case accuracy: share of seed questions answered correctly in every variant."""
    return fmean(all(hits) for hits in _grouped(records, "seed").values())


def strict_micro_accuracy(records: Sequence[Record]) -> float:
    """micro_accuracy under the strict protocol."""
    return micro_accuracy(records, STRICT)


def strict_macro_accuracy(records: Sequence[Record]) -> float:
    """macro_accuracy under the strict protocol."""
    return macro_accuracy(records, STRICT)


def strict_seed_average_accuracy(records: Sequence[Record]) -> float:
    """seed_average_accuracy under the strict protocol."""
    return seed_average_accuracy(records, STRICT)
