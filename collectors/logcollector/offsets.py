"""Where each tailed file was read up to: one SQLite row per file, keyed by device + inode;
and where the journal was read up to: its cursor.

Keying by inode rather than by path is what makes rotation safe: a renamed file keeps its
row (and is finished from where we were), and a file that a glob matches under a new name
is not read twice. A fingerprint of the file's first bytes guards against inode reuse and
against copytruncate rewriting a file faster than we look.

A row is written only after the forwarder committed the lines before its offset (the
journal's cursor: after the forwarder committed the entry it names).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from collectors.state import open_state_db

#: bytes of a file's head that make up its fingerprint
FINGERPRINT_BYTES = 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    path TEXT NOT NULL,
    offset INTEGER NOT NULL,
    skipping INTEGER NOT NULL DEFAULT 0,
    head_len INTEGER NOT NULL DEFAULT 0,
    head_sha1 TEXT NOT NULL DEFAULT '',
    updated REAL NOT NULL,
    PRIMARY KEY (dev, ino)
);
CREATE TABLE IF NOT EXISTS journal (
    source TEXT PRIMARY KEY,
    cursor TEXT NOT NULL,
    updated REAL NOT NULL
);
"""


@dataclass(slots=True)
class OffsetRow:
    """The saved position in one file."""

    dev: int
    ino: int
    path: str
    offset: int
    skipping: bool = False
    head_len: int = 0
    head_sha1: str = ""

    @property
    def key(self) -> tuple[int, int]:
        return (self.dev, self.ino)


def fingerprint(fd: int) -> tuple[int, str]:
    """(length, sha1 hex) of the first bytes of the open file ``fd``."""
    head = os.pread(fd, FINGERPRINT_BYTES, 0)
    return len(head), hashlib.sha1(head).hexdigest()


def same_head(fd: int, head_len: int, head_sha1: str) -> bool:
    """True if the file still starts with the bytes fingerprinted earlier."""
    if head_len == 0:
        return True
    head = os.pread(fd, head_len, 0)
    return len(head) == head_len and hashlib.sha1(head).hexdigest() == head_sha1


class OffsetStore:
    """The ``collectors/logcollector.db`` file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_state_db(self.path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def load(self) -> dict[tuple[int, int], OffsetRow]:
        rows = self._db.execute(
            "SELECT dev, ino, path, offset, skipping, head_len, head_sha1 FROM files"
        ).fetchall()
        return {
            (r[0], r[1]): OffsetRow(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6]) for r in rows
        }

    def save(self, row: OffsetRow) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO files (dev, ino, path, offset, skipping, head_len, head_sha1,"
            " updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.dev,
                row.ino,
                row.path,
                row.offset,
                int(row.skipping),
                row.head_len,
                row.head_sha1,
                time.time(),
            ),
        )

    def delete(self, key: tuple[int, int]) -> None:
        self._db.execute("DELETE FROM files WHERE dev = ? AND ino = ?", key)

    # -- the journal ---------------------------------------------------------------------
    def cursor(self, source: str) -> str | None:
        """The cursor of the last committed entry of ``source`` (a journal directory, or
        ``system``), None if none was ever committed."""
        row = self._db.execute("SELECT cursor FROM journal WHERE source = ?", (source,)).fetchone()
        return str(row[0]) if row else None

    def save_cursor(self, source: str, cursor: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO journal (source, cursor, updated) VALUES (?, ?, ?)",
            (source, cursor, time.time()),
        )
