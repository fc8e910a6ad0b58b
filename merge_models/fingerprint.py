"""Content digests of files, remembered while a file's size, mtime and inode stay the same.

Hashing a checkpoint's weights on every load would cost more than loading them; the memo (a
sqlite table beside the merge cache) makes a repeat look-up a stat call.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from merge_models.settings import cache_root

BLOCK = 1 << 22


def file_digest(path: Path) -> str:
    """sha256 of a file's content, computed once per (path, size, mtime, inode); computed every time when the
    memo cannot be opened or written (a read-only cache, say)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    try:
        connection = _connect()
    except (OSError, sqlite3.Error):
        return _sha256(path)
    try:
        row = connection.execute("SELECT digest FROM digests WHERE path=? AND size=? AND mtime_ns=? AND inode=?",
                                 key).fetchone()
        if row:
            return row[0]
        digest = _sha256(path)
        try:
            with connection:
                connection.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?)", (*key, digest))
        except sqlite3.Error:
            pass  # the memo only saves time
        return digest
    finally:
        connection.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _connect() -> sqlite3.Connection:
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(root / "fingerprints.sqlite", timeout=30)
    connection.execute("CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
                       "inode INTEGER, digest TEXT)")
    return connection
