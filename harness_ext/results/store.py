"""The results store: one record file per run under `<root>/runs/`, and a sqlite index built from them.

Record files are the truth: written once (temporary file, then rename), never rewritten. A run's
file name ends in its run id (a hash of its results JSON), so adding a run twice is a no-op.
Writers take `<root>/.lock`, so concurrent ingests neither lose nor duplicate runs. The index
(`<root>/.index.sqlite`, never committed) is brought up to date from the files whenever it is read.

Two stores by default: the committed one (`results/`, or `$MERGED_VLM_RESULTS`), which holds full
runs the project vouches for and changes only when asked (`--commit`); and a local one
(`results/local/`, or `$MERGED_VLM_LOCAL_RESULTS`, ignored by git), where every other run goes:
sweeps, demos, runs with `--limit`, anything ingested without `--commit`. Views read both (a run in
both counts once); `--store DIR` names one store for reading and writing. `results/` is in the current
folder when merged-vlm runs from a checkout; an installed merged-vlm (no checkout) keeps it in the user
data folder (platformdirs), and its commands that record say so in their first line (`recording_note`).

Every variant gets a display name that is unique and stable: the name of its earliest run; a
variant whose name an earlier variant already holds is shown as `<name>#<hash prefix>`.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from filelock import FileLock, Timeout

from harness_ext.results import protocols
from harness_ext.results.errors import ResultsError
from harness_ext.results.files import write_atomic
from harness_ext.results.record import RunRecord, dumps, load_record

ROOT_ENV, LOCAL_ENV = "MERGED_VLM_RESULTS", "MERGED_VLM_LOCAL_RESULTS"
INDEX_VERSION = 2
LOCK_TIMEOUT_S = 120
IGNORED = ".index.sqlite*\n.index.lock\n.lock\n.*.tmp\nlocal/\n"  # the committed store's .gitignore
IGNORE_ALL = "*\n"  # the local store's: nothing in it is committed
SCHEMA = """
CREATE TABLE files (path TEXT PRIMARY KEY);
CREATE TABLE runs (run_id TEXT PRIMARY KEY, file TEXT, store TEXT, date TEXT, harness TEXT, model TEXT,
                   variant_id TEXT, name TEXT, kind TEXT, method TEXT, lambda TEXT, weights TEXT, layers TEXT,
                   vlm TEXT, recipe_hash TEXT, baseline INTEGER, baseline_reason TEXT, wall_time_s REAL,
                   run_limit REAL);
CREATE TABLE tasks (run_id TEXT, task TEXT, split TEXT, metric TEXT, aggregation TEXT, score REAL, n INTEGER,
                    n_total INTEGER, doc_set TEXT, limited INTEGER, version TEXT, has_samples INTEGER,
                    PRIMARY KEY (run_id, task));
CREATE TABLE split_scores (run_id TEXT, task TEXT, split TEXT, score REAL, PRIMARY KEY (run_id, task, split));
CREATE TABLE samples (run_id TEXT, task TEXT, key TEXT, doc_id INTEGER, split TEXT, category TEXT, cluster TEXT,
                      correct INTEGER, value REAL, extracted TEXT, target TEXT);
CREATE INDEX samples_run_task ON samples (run_id, task);
-- every document's verdict under every protocol the task logged ("official" alone for older logs)
CREATE TABLE verdicts (run_id TEXT, task TEXT, key TEXT, protocol TEXT, correct INTEGER);
-- task scores per protocol: split '' is the task's score, a split name its score over that split
CREATE TABLE protocol_scores (run_id TEXT, task TEXT, protocol TEXT, split TEXT, score REAL,
                              PRIMARY KEY (run_id, task, protocol, split));
CREATE TABLE variants (variant_id TEXT PRIMARY KEY, display TEXT UNIQUE, first_date TEXT, runs INTEGER);
-- per variant and task, the most recent run's result
CREATE VIEW latest AS SELECT * FROM (
    SELECT r.variant_id, r.date, t.*, ROW_NUMBER() OVER (
        PARTITION BY r.variant_id, t.task ORDER BY r.date DESC, r.run_id DESC) AS rank
    FROM tasks t JOIN runs r USING (run_id)) WHERE rank = 1;
-- per variant and task, the run on the most documents (the most recent of those): what views show
CREATE VIEW most_complete AS SELECT * FROM (
    SELECT r.variant_id, r.date, t.*, ROW_NUMBER() OVER (
        PARTITION BY r.variant_id, t.task ORDER BY COALESCE(t.n, -1) DESC, r.date DESC, r.run_id DESC) AS rank
    FROM tasks t JOIN runs r USING (run_id)) WHERE rank = 1;
"""


def data_home() -> Path:
    """Where runs are kept: the current folder when merged-vlm runs from a checkout, else the user data folder."""
    from merge_models.shipped import checkout

    return Path() if checkout() is not None else Path(platformdirs.user_data_dir("merged-vlm"))


def default_root() -> Path:
    """The committed store: `$MERGED_VLM_RESULTS`, else `results/` in `data_home()`."""
    return Path(os.environ.get(ROOT_ENV) or data_home() / "results")


def recording_note(commit: bool = False) -> str | None:
    """For an installed merged-vlm (no checkout): one line saying where runs are recorded (the committed store
    with `commit`, else the local one); None in a checkout."""
    from merge_models.shipped import checkout

    if checkout() is not None:
        return None
    how = f"${ROOT_ENV}" if os.environ.get(ROOT_ENV) else f"the user data folder; set ${ROOT_ENV} to move it"
    return f"runs are recorded in {default_root() if commit else local_root()} ({how})"


def local_root() -> Path:
    """The local store: `$MERGED_VLM_LOCAL_RESULTS`, else `local/` inside the committed store's folder."""
    return Path(os.environ.get(LOCAL_ENV) or default_root() / "local")


def open_store(path: Path | None = None, write: bool = False, commit: bool = False) -> Store:
    """The store a command uses: `path` (--store) when given; for writing, the committed store with `commit`,
    else the local one; for reading, the local store with the committed one read too."""
    if path is not None:
        if commit:
            raise ResultsError("--commit and --store: give one (--commit writes the committed store, "
                               f"{default_root()})")
        return Store(path)
    if write:
        return Store(default_root()) if commit else Store(local_root(), gitignore=IGNORE_ALL)
    return Store(local_root(), also_read=[default_root()], gitignore=IGNORE_ALL)


@dataclass(frozen=True)
class Added:
    """The outcome of adding one record."""

    record: RunRecord
    path: Path
    new: bool


class Store:
    """Record files under `root/runs/` (and, read only, under each `also_read/runs/`) and their index."""

    def __init__(self, root: Path, also_read: Sequence[Path] = (), gitignore: str = IGNORED,
                 strict: bool = False) -> None:
        self.root = root
        self.runs_dir = root / "runs"
        self.also_read = [p for p in also_read if p.resolve() != root.resolve()]
        self.gitignore = gitignore
        self.strict = strict  # an unreadable record file stops every read (regress) instead of a warning
        self._warned: set[str] = set()

    def add(self, records: list[RunRecord]) -> list[Added]:
        """Write each record not stored yet; a record whose run id is stored already is left alone."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self._ignore()
        out = []
        with self._lock(".lock"):
            stored = {run_id(p): p for p in self._own_files()}
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
        """Every record file this store reads, a run in several stores once (the read-only store's copy)."""
        found: dict[str, Path] = {}
        for folder in [*(p / "runs" for p in self.also_read), self.runs_dir]:
            for path in _record_files(folder):
                found.setdefault(run_id(path), path)
        return sorted(found.values(), key=lambda p: p.name)

    def load(self, run: str) -> RunRecord:
        """The record of a stored run."""
        for path in self.files():
            if run_id(path) == run:
                return load_record(path)
        raise ResultsError(f"run {run} is not in {self.runs_dir}")

    def index(self) -> sqlite3.Connection:
        """A connection to the index, first brought up to date with the record files."""
        if not any(folder.is_dir() for folder in [self.runs_dir, *(p / "runs" for p in self.also_read)]):
            raise ResultsError(f"{self._where()}: no runs recorded yet (no runs/ folder); record runs with "
                               "`merged-vlm track ingest OUTPUT_PATH` or pass --store")
        self.root.mkdir(parents=True, exist_ok=True)
        self._ignore()
        path = self.root / ".index.sqlite"
        with self._lock(".index.lock"):
            files = {str(p.resolve()): p for p in self.files()}
            connection, known, indexed = _open_index(path, files)
            added = sorted(set(files) - known)
            with connection:
                for key in added:
                    record = self._readable(files[key])
                    if record is None:
                        continue
                    if record.run_id in indexed:
                        self._warn(f"run {record.run_id} is recorded twice, in {indexed[record.run_id]} and "
                             f"{files[key].name}; reading the first (delete the other file)")
                        continue
                    _insert(connection, key, self._label(files[key]), record)
                    indexed[record.run_id] = files[key].name
                if added:
                    _name_variants(connection)
        connection.row_factory = sqlite3.Row
        return connection

    def _readable(self, path: Path) -> RunRecord | None:
        """The record in `path`; unreadable: a warning naming it and None, or (strict) a ResultsError."""
        try:
            return load_record(path)
        except ResultsError as exc:
            if self.strict:
                raise
            self._warn(f"{exc}; left out (fix or delete the file)")
            return None

    def _warn(self, message: str) -> None:
        """A warning line, once per store object (a command may read the index several times)."""
        if message not in self._warned:
            self._warned.add(message)
            warn(message)

    def _own_files(self) -> list[Path]:
        return _record_files(self.runs_dir)

    def _label(self, path: Path) -> str:
        """Which store a record file is in: `local` or `committed` for the default stores, else its folder."""
        folder = path.parent.parent.resolve()
        named = {local_root().resolve(): "local", default_root().resolve(): "committed"}
        return named.get(folder, str(path.parent.parent))

    def _where(self) -> str:
        return " or ".join(str(p) for p in [self.root, *self.also_read])

    def _ignore(self) -> None:
        if not (self.root / ".gitignore").exists():
            write_atomic(self.root / ".gitignore", self.gitignore)


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


def warn(message: str) -> None:
    """One warning line on stderr (views go on with the rest of the store)."""
    sys.stderr.write(f"warning: {message}\n")


def _current(connection: sqlite3.Connection, files: dict[str, Path]) -> bool:
    """Whether the index has the current layout and lists no file that is gone."""
    if connection.execute("PRAGMA user_version").fetchone()[0] != INDEX_VERSION:
        return False
    return all(row[0] in files for row in connection.execute("SELECT path FROM files"))


def _open_index(path: Path, files: dict[str, Path]) -> tuple[sqlite3.Connection, set[str], dict[str, str]]:
    """The index at `path` with the record files it lists and its {run id: file name}; rebuilt empty when
    it is outdated or unreadable (it is a cache of the record files)."""
    connection = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S)
    try:
        if _current(connection, files):
            known = {row[0] for row in connection.execute("SELECT path FROM files")}
            return connection, known, dict(connection.execute("SELECT run_id, file FROM runs").fetchall())
    except sqlite3.DatabaseError as exc:
        warn(f"{path}: index unreadable ({exc}); rebuilt from the record files")
    connection.close()
    for stale in (path, *(path.with_name(path.name + suffix) for suffix in ("-journal", "-wal", "-shm"))):
        stale.unlink(missing_ok=True)
    connection = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S)
    connection.executescript(SCHEMA)
    connection.execute(f"PRAGMA user_version = {INDEX_VERSION}")
    return connection, set(), {}


def run_id(path: Path) -> str:
    """The run id a record file's name ends with."""
    return path.stem.rsplit("-", 1)[-1]


def _record_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))


def _insert(connection: sqlite3.Connection, key: str, store: str, record: RunRecord) -> None:
    v, run = record.variant, record.run_id
    connection.execute("INSERT INTO files VALUES (?)", (key,))
    connection.execute(
        "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (run, Path(key).name, store, record.date, record.harness.name, record.harness.model, v.id, v.name, v.kind,
         v.method, None if v.lambda_ is None else str(v.lambda_), v.weights, v.layers, v.vlm, v.recipe_hash,
         int(v.baseline), v.baseline_reason, record.wall_time_s, record.harness.limit))
    for task, result in record.tasks.items():
        connection.execute("INSERT INTO tasks VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                           (run, task, result.split, result.metric, result.aggregation, result.score, result.n,
                            result.n_total, result.doc_set, int(result.partial), result.version,
                            int(result.samples is not None)))
        connection.executemany("INSERT INTO split_scores VALUES (?,?,?,?)",
                               [(run, task, split, score) for split, score in result.split_scores.items()])
        connection.executemany(
            "INSERT INTO samples VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [(run, task, s.key, s.doc_id, s.split, s.category, s.cluster, None if s.correct is None else
              int(s.correct), s.value, s.extracted, None if s.target is None else str(s.target))
             for s in result.samples or []])
        for protocol in protocols.protocols_of(result):
            scored = protocols.under(result, protocol)
            connection.executemany("INSERT INTO protocol_scores VALUES (?,?,?,?,?)",
                                   [(run, task, protocol, "", scored.score)] +
                                   [(run, task, protocol, split, value) for split, value in
                                    scored.split_scores.items()])
            connection.executemany(
                "INSERT INTO verdicts VALUES (?,?,?,?,?)",
                [(run, task, s.key, protocol, None if s.correct is None else int(s.correct))
                 for s in scored.samples or []])


def _name_variants(connection: sqlite3.Connection) -> None:
    """Display names: each variant's earliest run's name; taken already by an earlier variant: `name#hash`."""
    rows = connection.execute(
        "SELECT variant_id, name, date, COUNT(*) OVER (PARTITION BY variant_id) AS runs, ROW_NUMBER() OVER "
        "(PARTITION BY variant_id ORDER BY date, run_id) AS rank FROM runs").fetchall()
    earliest = sorted((date, variant, name, runs) for variant, name, date, runs, rank in rows if rank == 1)
    taken: set[str] = set()
    connection.execute("DELETE FROM variants")
    for date, variant, name, runs in earliest:
        display, width = name, 8
        while display in taken:
            display, width = f"{name}#{variant[:width]}", width + 4
        taken.add(display)
        connection.execute("INSERT INTO variants VALUES (?,?,?,?)", (variant, display, date, runs))
