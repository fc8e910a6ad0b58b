"""Scoring protocols: a task may log each document's verdict under several (e.g. "official" and
"strict"); every view scores under the one the user picks (`--protocol`, default "official").

Protocol names come from the records: a sample's `verdicts` maps each protocol to its verdict, and a
sample without them has one protocol, "official", its top-level `correct`. Under "official" a task's
score is the score the harness reported; under any other protocol it is recomputed from that
protocol's verdicts with the task's own aggregation (micro, macro over categories, cluster mean).
"""

from __future__ import annotations

from harness_ext.results import stats
from harness_ext.results.errors import ResultsError
from harness_ext.results.record import DEFAULT_PROTOCOL, SPLITS, Sample, TaskResult


def protocols_of(result: TaskResult) -> list[str]:
    """The protocols every sample of the task has a verdict under (the default one without a log)."""
    if not result.samples:
        return [DEFAULT_PROTOCOL]
    common = set.intersection(*(set(s.verdicts or {DEFAULT_PROTOCOL: None}) for s in result.samples))
    return sorted(common, key=lambda p: (p != DEFAULT_PROTOCOL, p))


def sample_under(sample: Sample, protocol: str) -> Sample:
    """The sample with its verdict (correct, value, extracted, rule) taken from `protocol`."""
    if protocol == DEFAULT_PROTOCOL and not sample.verdicts:
        return sample
    verdict = (sample.verdicts or {}).get(protocol)
    if verdict is None:
        raise KeyError(protocol)
    value = None if verdict.correct is None else float(verdict.correct)
    return sample.model_copy(update={"correct": verdict.correct, "value": value, "extracted": verdict.extracted,
                                     "rule": verdict.rule})


def under(result: TaskResult, protocol: str) -> TaskResult | None:
    """The task's result under `protocol`, or None when its samples have no verdicts under it."""
    if protocol == DEFAULT_PROTOCOL:
        if not result.samples or not any(s.verdicts for s in result.samples):
            return result
    elif not result.samples:
        return None
    try:
        samples = [sample_under(s, protocol) for s in result.samples]
    except KeyError:
        return None
    if protocol == DEFAULT_PROTOCOL:  # the harness's own scores stand
        return result.model_copy(update={"samples": samples})
    aggregation = "micro" if result.aggregation == "unknown" else result.aggregation
    score = _score(samples, aggregation)
    if result.split == "mixed":
        split_scores = {split: _score([s for s in samples if s.split == split], aggregation)
                        for split in sorted({s.split for s in samples if s.split})}
    else:
        split_scores = {result.split: score} if result.split in SPLITS else {}
    return result.model_copy(update={"samples": samples, "score": score, "split_scores": split_scores})


def require(result: TaskResult, protocol: str, task: str, where: str) -> TaskResult:
    """`under(result, protocol)`, or a one-line error naming the task and the protocols it has."""
    chosen = under(result, protocol)
    if chosen is None:
        raise ResultsError(f"--protocol {protocol}: {where} has no {protocol} verdicts for {task} (it has "
                           f"{', '.join(protocols_of(result))})")
    return chosen


def _score(samples: list[Sample], aggregation: str) -> float:
    return stats.score([s.value or 0.0 for s in samples], aggregation, [s.category for s in samples],
                       [s.cluster for s in samples])
