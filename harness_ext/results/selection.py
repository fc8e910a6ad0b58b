"""What a name on the command line refers to: a results file or folder, a run, or a variant.

A reference is tried as, in order: an existing path (an lmms-eval / lm-eval output holding one run,
read without storing it); a run id; a variant id (recipe hash); a variant's display name; a name a
run of exactly one variant was recorded under; then a prefix of any run id, variant id or display
name, which must match one thing. An exact name never counts as ambiguous.

A variant stands for, per task, its run on the most documents (the most recent of those): a run on
part of the documents never displaces a complete one. Scores are under one scoring protocol
(`official` by default, see harness_ext.results.protocols).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from harness_ext.results import protocols
from harness_ext.results.errors import ResultsError
from harness_ext.results.ingest import read_output
from harness_ext.results.record import DEFAULT_PROTOCOL, RunRecord, TaskResult, Variant, count_span
from harness_ext.results.store import Store


@dataclass
class Evaluation:
    """Task results of one variant: one run's, or per task the most complete of the variant's runs."""

    label: str
    variant: Variant
    tasks: dict[str, TaskResult]
    run_of_task: dict[str, str]
    records: list[RunRecord]  # the runs the tasks come from, most recent first
    protocol: str = DEFAULT_PROTOCOL


@dataclass(frozen=True)
class Target:
    kind: str  # "run" or "variant"
    id: str
    name: str  # what to call it in messages


def resolve(reference: str, store: Store, protocol: str = DEFAULT_PROTOCOL) -> Evaluation:
    """The evaluation a reference names (see the module docstring), scored under `protocol`."""
    path = Path(reference)
    if path.exists():
        records = read_output(path)
        if len(records) != 1:
            raise ResultsError(f"{reference}: holds {len(records)} runs; name one results file")
        return _of_run(records[0], f"file {reference}", records[0].variant.name, protocol)
    connection = store.index()
    target = find(connection, reference)
    if target.kind == "run":
        record = store.load(target.id)
        return _of_run(record, f"run {target.id}", _display(connection, record.variant.id), protocol)
    return _of_variant(connection, store, target, protocol)


def find(connection: sqlite3.Connection, reference: str) -> Target:
    """The run or variant a stored reference names; a one-line error when it names none or several."""
    for query in ("SELECT 'run', run_id, run_id FROM runs WHERE run_id = ?",
                  "SELECT 'variant', variant_id, display FROM variants WHERE variant_id = ?",
                  "SELECT 'variant', variant_id, display FROM variants WHERE display = ?",
                  ("SELECT DISTINCT 'variant', r.variant_id, v.display FROM runs r JOIN variants v "
                   "USING (variant_id) WHERE r.name = ?")):
        found = [Target(*row) for row in connection.execute(query, (reference,))]
        if len(found) == 1:
            return found[0]
        if found:
            return _one(found, reference)
    prefixed = {Target(*row) for row in connection.execute(
        "SELECT 'run', run_id, run_id FROM runs WHERE substr(run_id, 1, length(?1)) = ?1 UNION "
        "SELECT 'variant', variant_id, display FROM variants WHERE substr(variant_id, 1, length(?1)) = ?1 "
        "OR substr(display, 1, length(?1)) = ?1", (reference,))}
    if not prefixed:
        raise ResultsError(f"'{reference}' names no results file, run or variant; see `merged-vlm track list`")
    return _one(sorted(prefixed, key=lambda t: (t.kind, t.name)), reference)


def _one(found: list[Target], reference: str) -> Target:
    if len(found) == 1:
        return found[0]
    names = ", ".join(f"{t.kind} {t.name}" + (f" ({t.id[:12]})" if t.kind == "variant" else "") for t in found[:6])
    raise ResultsError(f"'{reference}' is ambiguous: it matches {names}{' ...' if len(found) > 6 else ''}; give "
                       "more characters or a full name")


def _display(connection: sqlite3.Connection, variant_id: str) -> str:
    row = connection.execute("SELECT display FROM variants WHERE variant_id = ?", (variant_id,)).fetchone()
    return row[0]


def _of_run(record: RunRecord, what: str, name: str, protocol: str) -> Evaluation:
    tasks = {task: protocols.require(result, protocol, task, what) for task, result in record.tasks.items()}
    variant = record.variant.model_copy(update={"name": name})
    return Evaluation(label=f"{name} ({what}{_protocol_note(protocol)})", variant=variant, tasks=tasks,
                      run_of_task={task: record.run_id for task in tasks}, records=[record], protocol=protocol)


def _of_variant(connection: sqlite3.Connection, store: Store, target: Target, protocol: str) -> Evaluation:
    rows = connection.execute("SELECT task, run_id FROM most_complete WHERE variant_id = ? ORDER BY task",
                              (target.id,)).fetchall()
    recorded = connection.execute("SELECT runs FROM variants WHERE variant_id = ?", (target.id,)).fetchone()[0]
    used = dict.fromkeys(row[1] for row in rows)
    records = sorted((store.load(run) for run in used), key=lambda r: (r.date, r.run_id), reverse=True)
    by_id = {r.run_id: r for r in records}
    tasks = {task: protocols.require(by_id[run].tasks[task], protocol, task, f"run {run}") for task, run in rows}
    label = (f"{target.name} (variant {target.id[:12]}: {recorded} run{'s' if recorded != 1 else ''} recorded, "
             f"scores from {_sources(rows, tasks)}{_protocol_note(protocol)})")
    variant = records[0].variant.model_copy(update={"name": target.name})
    return Evaluation(label=label, variant=variant, tasks=tasks, run_of_task={task: run for task, run in rows},
                      records=records, protocol=protocol)


def _sources(rows: list, tasks: dict[str, TaskResult]) -> str:
    """Which runs the scores come from and on how many documents, e.g. "run 7d9f (200 documents per task)"."""
    by_run: dict[str, list[str]] = {}
    for task, run in rows:
        by_run.setdefault(run, []).append(task)
    parts = []
    for run, names in by_run.items():
        counts = sorted({tasks[t].n for t in names if tasks[t].n is not None})
        docs = "?" if not counts else count_span(counts)
        which = "" if len(by_run) == 1 else f", {', '.join(names)}"
        parts.append(f"run {run} ({docs} documents per task{which})")
    return "; ".join(parts)


def _protocol_note(protocol: str) -> str:
    return "" if protocol == DEFAULT_PROTOCOL else f", protocol {protocol}"
