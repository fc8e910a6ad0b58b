"""What a name on the command line refers to: a results file or folder, a run, or a variant.

A reference is tried as, in order: an existing path (an lmms-eval / lm-eval output holding one run,
read without storing it); a stored run id or unique prefix; a variant id (recipe hash) or unique
prefix; a variant name. A variant stands for its latest result of every task it was evaluated on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness_ext.results.errors import ResultsError
from harness_ext.results.ingest import read_output
from harness_ext.results.record import RunRecord, TaskResult, Variant
from harness_ext.results.store import Store

MIN_PREFIX = 4


@dataclass
class Evaluation:
    """Task results of one variant: one run's, or the latest of each task over the variant's runs."""

    label: str
    variant: Variant
    tasks: dict[str, TaskResult]
    run_of_task: dict[str, str]
    records: list[RunRecord]  # the runs the tasks come from, most recent first


def resolve(reference: str, store: Store) -> Evaluation:
    """The evaluation a reference names (see the module docstring)."""
    path = Path(reference)
    if path.exists():
        records = read_output(path)
        if len(records) != 1:
            raise ResultsError(f"{reference}: holds {len(records)} runs; name one results file")
        return _of_runs(records, f"file {reference}")
    connection = store.index()
    runs = _matches(connection, "SELECT run_id FROM runs WHERE run_id = ?", "SELECT run_id FROM runs WHERE run_id "
                    "LIKE ?", reference)
    if len(runs) == 1:
        return _of_runs([store.load(runs[0])], f"run {runs[0]}")
    variants = _matches(connection, "SELECT DISTINCT variant_id FROM runs WHERE variant_id = ? OR name = ?",
                        "SELECT DISTINCT variant_id FROM runs WHERE variant_id LIKE ?", reference)
    if len(runs) > 1 or len(variants) > 1:
        names = ", ".join(sorted(runs + variants)[:6])
        raise ResultsError(f"'{reference}' is ambiguous: it matches {names}; give more characters")
    if not variants:
        raise ResultsError(f"'{reference}' names no results file, run or variant; see `merged-vlm track list`")
    rows = connection.execute("SELECT task, run_id FROM latest WHERE variant_id = ? ORDER BY date DESC",
                              (variants[0],)).fetchall()
    records = {run_id: store.load(run_id) for run_id in dict.fromkeys(row["run_id"] for row in rows)}
    evaluation = _of_runs(list(records.values()), f"variant {variants[0]}, {len(records)} run(s)")
    evaluation.tasks = {row["task"]: records[row["run_id"]].tasks[row["task"]] for row in rows}
    evaluation.run_of_task = {row["task"]: row["run_id"] for row in rows}
    return evaluation


def _of_runs(records: list[RunRecord], what: str) -> Evaluation:
    latest = records[0]
    return Evaluation(label=f"{latest.variant.name} ({what})", variant=latest.variant,
                      tasks=dict(latest.tasks), run_of_task={task: latest.run_id for task in latest.tasks},
                      records=records)


def _matches(connection, exact: str, prefix: str, reference: str) -> list[str]:
    found = [row[0] for row in connection.execute(exact, (reference,) * exact.count("?"))]
    if not found and len(reference) >= MIN_PREFIX and re.fullmatch(r"[A-Za-z0-9-]+", reference):
        found = [row[0] for row in connection.execute(prefix, (reference + "%",))]
    return found
