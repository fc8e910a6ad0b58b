"""The results store: one record file per run under `<root>/runs/`, and a sqlite index built from them.

Record files are the truth: written once (temporary file, then rename), never rewritten, committed.
A run's file name ends in its run id (a hash of its results JSON), so adding a run twice is a no-op.
Writers take `<root>/.lock`, so concurrent ingests neither lose nor duplicate runs. The index
(`<root>/.index.sqlite`, not committed) is brought up to date from the files whenever it is read.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from harness_ext.results.errors import ResultsError
from harness_ext.results.files import write_atomic
from harness_ext.results.record import RunRecord, dumps, load_record

ROOT_ENV = "MERGED_VLM_RESULTS"
INDEX_VERSION = 1
LOCK_TIMEOUT_S = 120
IGNORED = ".index.sqlite*\n.index.lock\n.lock\n.*.tmp\n"
SCHEMA = """
CREATE TABLE files (name TEXT PRIMARY KEY);
CREATE TABLE runs (run_id TEXT PRIMARY KEY, file TEXT, date TEXT, harness TEXT, model TEXT, variant_id TEXT,
                   name TEXT, kind TEXT, method TEXT, lambda TEXT, weights TEXT, layers TEXT, vlm TEXT,
                   recipe_hash TEXT, baseline INTEGER, baseline_reason TEXT, wall_time_s REAL);
CREATE TABLE tasks (run_id TEXT, task TEXT, split TEXT, metric TEXT, aggregation TEXT, score REAL, n INTEGER,
                    version TEXT, has_samples INTEGER, PRIMARY KEY (run_id, task));
CREATE TABLE split_scores (run_id TEXT, task TEXT, split TEXT, score REAL, PRIMARY KEY (run_id, task, split));
CREATE TABLE samples (run_id TEXT, task TEXT, key TEXT, doc_id INTEGER, split TEXT, category TEXT,
                      correct INTEGER, value REAL, extracted TEXT, target TEXT);
CREATE INDEX samples_run_task ON samples (run_id, task);
-- per variant and task, the most recent run's result
CREATE VIEW latest AS SELECT * FROM (
    SELECT r.variant_id, r.date, t.*, ROW_NUMBER() OVER (
        PARTITION BY r.variant_id, t.task ORDER BY r.date DESC, r.run_id DESC) AS rank
    FROM tasks t JOIN runs r USING (run_id)) WHERE rank = 1;
"""


def default_root() -> Path:
    """`$MERGED_VLM_RESULTS`, else `results/` in the current folder."""
    return Path(os.environ.get(ROOT_ENV) or "results")


@dataclass(frozen=True)
class Added:
    """The outcome of adding one record."""

    record: RunRecord
    path: Path
    new: bool


class Store:
    """Record files under `root/runs/` and their index."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs_dir = root / "runs"

    def add(self, records: list[RunRecord]) -> list[Added]:
        """Write each record not stored yet; a record whose run id is stored already is left alone."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        if not (self.root / ".gitignore").exists():
            write_atomic(self.root / ".gitignore", IGNORED)
        out = []
        with self._lock(".lock"):
            stored = {self._run_id(p): p for p in self.files()}
            for record in records:
                if record.run_id in stored:
                    out.append(Added(record, stored[record.run_id], False))
                    continue
                path = self.runs_dir / record.file_name()
                write_atomic(path, dumps(record))
                stored[record.run_id] = path
                out.append(Added(record, path, True))
        return out

    def files(self) -> list[Path]:
        """Every record file, oldest first."""
        if not self.runs_dir.is_dir():
            return []
        return sorted(p for p in self.runs_dir.glob("*.json") if not p.name.startswith("."))

    def load(self, run_id: str) -> RunRecord:
        """The record of a stored run."""
        for path in self.files():
            if self._run_id(path) == run_id:
                return load_record(path)
        raise ResultsError(f"run {run_id} is not in {self.runs_dir}")

    def index(self) -> sqlite3.Connection:
        """A connection to the index, first brought up to date with the record files."""
        if not self.runs_dir.is_dir():
            raise ResultsError(f"{self.root}: no results store here (no runs/ folder); record runs with "
                               "`merged-vlm track ingest OUTPUT_PATH` or pass --store")
        path = self.root / ".index.sqlite"
        with self._lock(".index.lock"):
            connection = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S)
            files = {p.name: p for p in self.files()}
            if not self._current(connection, files):
                connection.close()
                path.unlink(missing_ok=True)
                connection = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S)
                connection.executescript(SCHEMA)
                connection.execute(f"PRAGMA user_version = {INDEX_VERSION}")
            known = {row[0] for row in connection.execute("SELECT name FROM files")}
            with connection:
                for name in sorted(set(files) - known):
                    _insert(connection, name, load_record(files[name]))
        connection.row_factory = sqlite3.Row
        return connection

    @staticmethod
    def _current(connection: sqlite3.Connection, files: dict[str, Path]) -> bool:
        """Whether the index has the current layout and lists no file that is gone."""
        if connection.execute("PRAGMA user_version").fetchone()[0] != INDEX_VERSION:
            return False
        return all(row[0] in files for row in connection.execute("SELECT name FROM files"))

    @staticmethod
    def _run_id(path: Path) -> str:
        return path.stem.rsplit("-", 1)[-1]

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        lock = FileLock(str(self.root / name), timeout=LOCK_TIMEOUT_S)
        try:
            lock.acquire()
        except Timeout:
            raise ResultsError(f"{self.root / name}: another process has held the store's lock for "
                               f"{LOCK_TIMEOUT_S} s; try again") from None
        try:
            yield
        finally:
            lock.release()


def _insert(connection: sqlite3.Connection, name: str, record: RunRecord) -> None:
    v, run = record.variant, record.run_id
    connection.execute("INSERT INTO files VALUES (?)", (name,))
    connection.execute(
        "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (run, name, record.date, record.harness.name, record.harness.model, v.id, v.name, v.kind, v.method,
         None if v.lambda_ is None else str(v.lambda_), v.weights, v.layers, v.vlm, v.recipe_hash, int(v.baseline),
         v.baseline_reason, record.wall_time_s))
    for task, result in record.tasks.items():
        connection.execute("INSERT INTO tasks VALUES (?,?,?,?,?,?,?,?,?)",
                           (run, task, result.split, result.metric, result.aggregation, result.score, result.n,
                            result.version, int(result.samples is not None)))
        connection.executemany("INSERT INTO split_scores VALUES (?,?,?,?)",
                               [(run, task, split, score) for split, score in result.split_scores.items()])
        connection.executemany(
            "INSERT INTO samples VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(run, task, s.key, s.doc_id, s.split, s.category, None if s.correct is None else int(s.correct),
              s.value, s.extracted, None if s.target is None else str(s.target)) for s in result.samples or []])
