"""Regression gating: a candidate fails only where a score drops by more than a threshold AND the drop is
statistically significant.

Significant means both: the paired bootstrap interval of the difference (level 1 - alpha) lies
entirely below zero, and McNemar's test on the paired verdicts gives p < alpha (when the verdicts are
binary). Tasks and split averages are both checked.

A candidate also fails when it covers fewer documents than the baseline (a task missing, or fewer of
its documents): a gate passed on part of the documents says nothing about the rest.
"""

from __future__ import annotations

from harness_ext.results.compare import Comparison, Row
from harness_ext.results.errors import ResultsError


def check_comparable(comparison: Comparison) -> None:
    """A gate needs per-sample verdicts on both sides for every compared task."""
    missing = [row.name for row in comparison.tasks if row.note.startswith("reported scores")]
    if missing:
        raise ResultsError(f"no per-sample log for {', '.join(missing)} on one side; a significance test needs "
                           "them: re-run lmms-eval with --log_samples and ingest again")


def coverage_failures(comparison: Comparison) -> list[str]:
    """Where the candidate (B) covers fewer documents than the baseline (A), one line each."""
    out = [f"{task}: the candidate was not evaluated on it" for task in comparison.only_in_a]
    for task in comparison.narrowed:  # the other compared tasks rest on the same documents on both sides
        baseline, candidate = comparison.a.tasks[task].n or 0, comparison.b.tasks[task].n or 0
        if candidate < baseline:
            out.append(f"{task}: the candidate covers {candidate} of the baseline's {baseline} documents")
    return out


def is_regression(row: Row, max_drop_points: float, alpha: float) -> bool:
    """Whether `row` drops by more than `max_drop_points` (percentage points) and significantly."""
    if row.delta is None or row.high is None or -100 * row.delta <= max_drop_points:
        return False
    return row.high < 0 and (row.mcnemar is None or row.mcnemar.p < alpha)


def regressions(comparison: Comparison, max_drop_points: float) -> list[Row]:
    """The tasks and split averages that regress."""
    if max_drop_points < 0:
        raise ResultsError(f"--max-drop {max_drop_points}: must be >= 0 (percentage points)")
    return [row for row in comparison.tasks + comparison.splits
            if is_regression(row, max_drop_points, comparison.alpha)]
