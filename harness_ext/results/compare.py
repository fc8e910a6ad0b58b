"""Paired comparison of two evaluations, per task and per split, on the same documents.

Each task is compared only when both sides rest on the same document set (the record's `doc_set`);
on different sets the comparison stops with one line, unless asked (`intersection=True`) to compare
the documents both answered, which it then reports with each side's n. Documents pair by their key
(dataset id, else position); documents whose targets differ are left out and reported. For each
task: both scores on the paired documents, the difference B - A, its paired bootstrap interval
(resampling units as the task's score defines them) and McNemar's p-value on the paired verdicts. A split's score is the mean over its
tasks (as the suite's groups define it); its interval comes from bootstrapping every task
independently (stratified) and its McNemar test pools the split's paired verdicts.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from harness_ext.results import stats
from harness_ext.results.errors import ResultsError
from harness_ext.results.record import Sample, TaskResult
from harness_ext.results.selection import Evaluation


@dataclass
class Row:
    """One compared score (a task, or a split average)."""

    name: str
    split: str | None
    n: int  # paired documents
    a: float | None
    b: float | None
    delta: float | None  # b - a
    low: float | None = None  # bootstrap interval of delta
    high: float | None = None
    mcnemar: stats.McNemar | None = None
    note: str = ""
    n_a: int | None = None  # documents side A has for the task (or split)
    n_b: int | None = None


@dataclass
class Mismatch:
    """Documents of a task that could not be paired."""

    task: str
    only_a: list[str]
    only_b: list[str]
    target_differs: list[str]


@dataclass
class Comparison:
    a: Evaluation
    b: Evaluation
    alpha: float
    iterations: int
    seed: int
    tasks: list[Row] = field(default_factory=list)
    splits: list[Row] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    narrowed: list[str] = field(default_factory=list)  # tasks compared on the intersection of different sets


@dataclass
class _Cell:
    """Paired samples of one task (or of one task's documents of one split), with bootstrap replicates."""

    task: str
    aggregation: str
    a: list[Sample]
    b: list[Sample]
    deltas: np.ndarray | None = None

    def scores(self) -> tuple[float, float]:
        return self._score(self.a), self._score(self.b)

    def _score(self, samples: list[Sample]) -> float:
        return stats.score([s.value or 0.0 for s in samples], self._aggregation(), [s.category for s in samples],
                           [s.cluster for s in samples])

    def _aggregation(self) -> str:
        return "micro" if self.aggregation == "unknown" else self.aggregation

    def bootstrap(self, iterations: int, seed: int, split: str = "") -> np.ndarray:
        design = stats.Design.of(self._aggregation(), [s.category for s in self.a], [s.cluster for s in self.a])
        rng = np.random.default_rng([seed, zlib.crc32(self.task.encode()), zlib.crc32(split.encode())])
        return stats.bootstrap_deltas([s.value or 0.0 for s in self.a], [s.value or 0.0 for s in self.b], design,
                                      iterations, rng)

    def verdicts(self) -> tuple[list[bool], list[bool]] | None:
        if any(s.correct is None for s in self.a + self.b):
            return None
        return [bool(s.correct) for s in self.a], [bool(s.correct) for s in self.b]


def compare(a: Evaluation, b: Evaluation, alpha: float = 0.05, iterations: int = 10_000, seed: int = 0,
            tasks: list[str] | None = None, intersection: bool = False,
            sides: tuple[str, str] = ("A", "B")) -> Comparison:
    """Compare B against A on every task both have (or on `tasks`), each on the same documents on both sides;
    with `intersection`, tasks on different document sets are compared on the documents both answered."""
    if not 0 < alpha < 1:
        raise ResultsError(f"--alpha {alpha}: must be between 0 and 1")
    if iterations < 100:
        raise ResultsError(f"--iterations {iterations}: use at least 100 bootstrap replicates")
    chosen = tasks or sorted(set(a.tasks) | set(b.tasks))
    unknown = [t for t in chosen if t not in a.tasks and t not in b.tasks]
    if unknown:
        raise ResultsError(f"--tasks: {', '.join(unknown)} evaluated by neither side")
    out = Comparison(a, b, alpha, iterations, seed, only_in_a=[t for t in chosen if t not in b.tasks],
                     only_in_b=[t for t in chosen if t not in a.tasks])
    common = [t for t in chosen if t in a.tasks and t in b.tasks]
    if not common:
        raise ResultsError(f"{a.label} and {b.label} share no task; nothing to compare")
    for task in common:
        if not same_documents(a.tasks[task], b.tasks[task]):
            if not intersection:
                raise ResultsError(_different_documents(task, a.tasks[task], b.tasks[task], sides))
            out.narrowed.append(task)
    cells: dict[str, _Cell] = {}
    for task in common:
        row, cell = _task_row(task, a.tasks[task], b.tasks[task], out)
        out.tasks.append(row)
        if cell is not None:
            cells[task] = cell
    out.splits = _split_rows(out, cells, common)
    return out


def same_documents(a: TaskResult, b: TaskResult) -> bool:
    """Whether two results of a task rest on the same documents (their document sets; without per-sample
    logs, the same count of the same task)."""
    if a.doc_set is not None and b.doc_set is not None:
        return a.doc_set == b.doc_set
    return (a.n, a.n_total) == (b.n, b.n_total)


def documents(result: TaskResult) -> str:
    """How many documents a result rests on: "200", or "20 of 200" when part of the task."""
    if result.n is None:
        return "? documents"
    return f"{result.n} of {result.n_total}" if result.partial and result.n_total else str(result.n)


def _different_documents(task: str, a: TaskResult, b: TaskResult, sides: tuple[str, str]) -> str:
    both = ""
    if a.samples is not None and b.samples is not None:
        both = f" the {len({s.key for s in a.samples} & {s.key for s in b.samples})}"
    return (f"{task}: {sides[0]} rests on {documents(a)} documents, {sides[1]} on {documents(b)}: not the same "
            f"documents, so the scores do not compare; evaluate both on the same documents, or pass --intersection "
            f"to compare on{both} documents both answered")


def _task_row(task: str, a: TaskResult, b: TaskResult, out: Comparison) -> tuple[Row, _Cell | None]:
    if a.samples is None or b.samples is None:
        delta = None if a.score is None or b.score is None else b.score - a.score
        return Row(task, a.split, 0, a.score, b.score, delta, note="reported scores: no per-sample log",
                   n_a=a.n, n_b=b.n), None
    paired_a, paired_b, mismatch = _pair(task, a.samples, b.samples)
    if mismatch.only_a or mismatch.only_b or mismatch.target_differs:
        out.mismatches.append(mismatch)
    if not paired_a:
        return Row(task, a.split, 0, None, None, None, note="no common documents", n_a=a.n, n_b=b.n), None
    notes = [] if a.aggregation == b.aggregation else [f"aggregations differ ({a.aggregation} / {b.aggregation})"]
    if task in out.narrowed:
        notes.append(f"intersection: A has {len(a.samples)}, B {len(b.samples)}")
    cell = _Cell(task, a.aggregation, paired_a, paired_b)
    cell.deltas = cell.bootstrap(out.iterations, out.seed)
    score_a, score_b = cell.scores()
    low, high = stats.interval(cell.deltas, out.alpha)
    verdicts = cell.verdicts()
    return Row(task, a.split, len(paired_a), score_a, score_b, score_b - score_a, low, high,
               stats.mcnemar(*verdicts) if verdicts else None, "; ".join(notes), len(a.samples),
               len(b.samples)), cell


def _pair(task: str, a: list[Sample], b: list[Sample]) -> tuple[list[Sample], list[Sample], Mismatch]:
    key = _key_function(a, b)
    by_key_b = {key(s): s for s in b}
    keys_a = {key(s) for s in a}
    paired_a, paired_b, differs = [], [], []
    for sample in a:
        other = by_key_b.get(key(sample))
        if other is None:
            continue
        if other.target != sample.target:
            differs.append(key(sample))
            continue
        paired_a.append(sample)
        paired_b.append(other)
    only_a = [key(s) for s in a if key(s) not in by_key_b]
    only_b = [key(s) for s in b if key(s) not in keys_a]
    return paired_a, paired_b, Mismatch(task, only_a, only_b, differs)


def _key_function(a: list[Sample], b: list[Sample]):
    """Dataset ids when they are unique on both sides, else positions."""
    for samples in (a, b):
        keys = [s.key for s in samples]
        if len(set(keys)) != len(keys):
            return lambda s: f"doc_id:{s.doc_id}"
    return lambda s: s.key


def _split_rows(out: Comparison, cells: dict[str, _Cell], common: list[str]) -> list[Row]:
    rows = []
    splits = sorted({s.split for c in cells.values() for s in c.a if s.split})
    for split in splits:
        parts = []
        for task, cell in cells.items():
            keep = [i for i, s in enumerate(cell.a) if s.split == split]
            if not keep:
                continue
            if len(keep) == len(cell.a):
                parts.append(cell)
            else:
                part = _Cell(task, cell.aggregation, [cell.a[i] for i in keep], [cell.b[i] for i in keep])
                part.deltas = part.bootstrap(out.iterations, out.seed, split)
                parts.append(part)
        scores = [p.scores() for p in parts]
        deltas = np.mean([p.deltas for p in parts], axis=0)
        low, high = stats.interval(deltas, out.alpha)
        verdicts = [p.verdicts() for p in parts]
        test = None if any(v is None for v in verdicts) else stats.mcnemar(
            [x for v in verdicts for x in v[0]], [x for v in verdicts for x in v[1]])
        score_a, score_b = float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores]))
        skipped = [t for t in common if t not in cells and out.a.tasks[t].split == split]
        n_a, n_b = (sum(s.split == split for p in parts for s in side.tasks[p.task].samples or [])
                    for side in (out.a, out.b))
        rows.append(Row(f"{split} (mean of {len(parts)} task{'s' if len(parts) > 1 else ''})", split,
                        sum(len(p.a) for p in parts), score_a, score_b, score_b - score_a, low, high, test,
                        f"without {', '.join(skipped)} (no paired samples)" if skipped else "",
                        n_a or None, n_b or None))
    return rows
