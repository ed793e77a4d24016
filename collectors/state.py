"""The last state a stateful collector reported, and the differences to the next scan.

One SQLite table per collector process (``collectors/<name>.db``): a row per document
(collector, primary key) with its document id, a digest of its stable fields, its data and
a free ``extra`` text the collector may use (fim keeps its quick-check stamp there). A scan
is compared with the rows: new keys are ``create``, changed digests ``update``, missing keys
``delete``. Rows change only once the forwarder committed the events (:meth:`apply`).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import orjson

Operation = Literal["create", "update", "delete"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    collector TEXT NOT NULL,
    key TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    data BLOB NOT NULL,
    extra TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (collector, key)
)
"""


class Stored(NamedTuple):
    """One document as last reported."""

    doc_id: str
    digest: str
    data: dict[str, Any]
    extra: str


class Item(NamedTuple):
    """One document found by a scan: its data and the collector's ``extra`` text."""

    data: dict[str, Any]
    extra: str = ""


@dataclass(frozen=True, slots=True)
class Change:
    """One difference to report (and, once committed, to store)."""

    operation: Operation
    collector: str
    key: str
    doc_id: str
    data: dict[str, Any] | None
    digest: str = ""
    extra: str = ""


def digest_of(data: dict[str, Any]) -> str:
    """A stable digest of a document (sorted keys, so field order does not matter)."""
    return hashlib.sha1(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def open_state_db(path: Path, schema: str) -> sqlite3.Connection:
    """A collector's SQLite state file, in autocommit mode, WAL, synchronous NORMAL.

    WAL + NORMAL: a crash of the process loses nothing; a power cut may lose the last
    writes, which repeats a few events but never loses any (state is saved after commit).
    """
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db


class StateStore:
    """The ``collectors/<name>.db`` file of a stateful collector."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_state_db(self.path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def items(self, collector: str) -> dict[str, Stored]:
        rows = self._db.execute(
            "SELECT key, doc_id, digest, data, extra FROM items WHERE collector = ?", (collector,)
        )
        return {r[0]: Stored(r[1], r[2], orjson.loads(r[3]), r[4]) for r in rows}

    def count(self, collector: str | None = None) -> int:
        if collector is None:
            return int(self._db.execute("SELECT count(*) FROM items").fetchone()[0])
        return int(
            self._db.execute(
                "SELECT count(*) FROM items WHERE collector = ?", (collector,)
            ).fetchone()[0]
        )

    def diff(
        self,
        collector: str,
        current: dict[str, Item],
        doc_id: Callable[[str], str],
        stable: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        previous: dict[str, Stored] | None = None,
    ) -> list[Change]:
        """The changes that turn the stored state of ``collector`` into ``current``.

        ``stable`` projects a document onto the fields whose change is worth an update
        (volatile figures such as free memory are left out of the comparison).
        """
        old = self.items(collector) if previous is None else previous
        changes: list[Change] = []
        for key, item in current.items():
            digest = digest_of(stable(item.data) if stable else item.data)
            was = old.get(key)
            if was is None:
                changes.append(
                    Change("create", collector, key, doc_id(key), item.data, digest, item.extra)
                )
            elif was.digest != digest:
                changes.append(
                    Change("update", collector, key, was.doc_id, item.data, digest, item.extra)
                )
            elif was.extra != item.extra:
                # Same document, new bookkeeping (e.g. a touched file): store it, send nothing.
                self._db.execute(
                    "UPDATE items SET extra = ? WHERE collector = ? AND key = ?",
                    (item.extra, collector, key),
                )
        for key, was in old.items():
            if key not in current:
                changes.append(Change("delete", collector, key, was.doc_id, None))
        return changes

    def apply(self, changes: Iterable[Change]) -> None:
        """Store committed changes, all in one transaction."""
        self._db.execute("BEGIN")
        try:
            for ch in changes:
                if ch.operation == "delete":
                    self._db.execute(
                        "DELETE FROM items WHERE collector = ? AND key = ?", (ch.collector, ch.key)
                    )
                else:
                    self._db.execute(
                        "INSERT OR REPLACE INTO items (collector, key, doc_id, digest, data, extra)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            ch.collector,
                            ch.key,
                            ch.doc_id,
                            ch.digest,
                            orjson.dumps(ch.data),
                            ch.extra,
                        ),
                    )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
