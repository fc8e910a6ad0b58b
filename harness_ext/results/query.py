"""`track query`: user SQL over the store's index, read only and with a time limit.

The connection opens the index read only (URI mode=ro), may attach no database (so neither ATTACH nor
VACUUM INTO can create a file), and an authorizer lets a statement only read; a progress handler
stops a query that runs past its time limit.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from harness_ext.results.errors import ResultsError

DEFAULT_TIMEOUT_S = 5.0
_READING = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
_READ_PRAGMAS = {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
                 "user_version", "foreign_key_list"}
_PROGRESS_STEPS = 10_000  # virtual machine instructions between two looks at the clock


def _only_reads(action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None) -> int:
    if action in _READING or (action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in _READ_PRAGMAS
                              and arg2 is None):
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def read_only(index: Path) -> sqlite3.Connection:
    """A connection to the index file that can only read (no writes, no attached databases)."""
    connection = sqlite3.connect(index.resolve().as_uri() + "?mode=ro", uri=True)
    connection.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    connection.set_authorizer(_only_reads)
    return connection


def run_query(index: Path, sql: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[list[str], list[tuple]]:
    """The column names and rows of `sql` over the index; a ResultsError for SQL that fails, writes,
    attaches, or runs past `timeout_s` seconds."""
    if not timeout_s > 0:
        raise ResultsError(f"--timeout must be a positive number of seconds, got {timeout_s}")
    connection = read_only(index)
    deadline = time.monotonic() + timeout_s
    connection.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_STEPS)
    try:
        cursor = connection.execute(sql)
        rows = cursor.fetchall()
    except sqlite3.Error as exc:
        if time.monotonic() > deadline:
            raise ResultsError(f"query: stopped after {timeout_s:g} s (--timeout); narrow the query or raise "
                               "--timeout") from None
        if "not authorized" in str(exc) or "too many attached" in str(exc):
            raise ResultsError("query: the index is read-only here; only reading queries are allowed (SELECT, "
                               "WITH; no ATTACH, VACUUM or writes)") from None
        raise ResultsError(f"query: {exc}") from None
    finally:
        connection.close()
    return [column[0] for column in cursor.description or []], rows
