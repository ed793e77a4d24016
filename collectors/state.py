"""The last state a stateful collector reported, and the differences to the next scan.

One SQLite file per collector process (``collectors/<name>.db``). Table ``items``: a row per
document (collector, primary key) with its document id, a digest of its stable fields, the
data last reported and a free ``extra`` text the collector may use (fim keeps its
quick-check stamp there). Table ``meta``: the agent uuid the rows belong to and when each
collector last sent everything again (:mod:`collectors.stateful`).

A scan is compared with the rows: new keys are ``create``, changed digests ``update``,
missing keys ``delete``. ``@timestamp`` and the volatile fields a collector names are left
out of the digest, so a rescan does not send everything again. An ``update`` is a partial
merge on the server, so it carries an explicit null for every field that disappeared since
the last report. Rows change only once the forwarder committed the events (:meth:`apply`).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import orjson

from core.storage import private_db

Operation = Literal["create", "update", "delete"]

#: the field that says when a document changed; never part of the comparison
TIMESTAMP = "@timestamp"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    collector TEXT NOT NULL,
    key TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    data BLOB NOT NULL,
    extra TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (collector, key)
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
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
    #: the document as the host has it now (stored once committed); None for a delete
    data: dict[str, Any] | None
    digest: str = ""
    extra: str = ""
    #: what goes on the wire when it differs from ``data`` (an update with nulls)
    sent: dict[str, Any] | None = None
    #: an unchanged document sent again by a full resync
    resync: bool = False

    @property
    def wire(self) -> dict[str, Any] | None:
        return self.sent if self.sent is not None else self.data


def digest_of(data: dict[str, Any]) -> str:
    """A stable digest of a document (sorted keys, so field order does not matter).

    ``@timestamp`` is left out: it says when the document changed, it is not a change.
    """
    if TIMESTAMP in data:
        data = {k: v for k, v in data.items() if k != TIMESTAMP}
    return hashlib.sha1(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def vanished(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the values in ``old`` that ``new`` no longer has (leaves only)."""
    out: list[str] = []
    for key, was in old.items():
        if was is None:
            continue
        path = f"{prefix}{key}"
        if key not in new:
            if isinstance(was, dict):
                out.extend(vanished(was, {}, f"{path}."))
            else:
                out.append(path)
        elif isinstance(was, dict) and isinstance(new[key], dict):
            out.extend(vanished(was, new[key], f"{path}."))
    return out


def with_nulls(data: dict[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """A copy of ``data`` with an explicit null at each dotted path (parents created)."""
    out = dict(data)
    for path in paths:
        *parents, leaf = path.split(".")
        node = out
        for part in parents:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[leaf] = None
    return out


def open_state_db(path: Path, schema: str) -> sqlite3.Connection:
    """A collector's SQLite state file, in autocommit mode, WAL, synchronous NORMAL.

    WAL + NORMAL: a crash of the process loses nothing; a power cut may lose the last
    writes, which repeats a few events but never loses any (state is saved after commit).
    The file and its WAL are 0600 whatever the umask (they name the host's files).
    """
    private_db(path)
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

    def sample(self) -> tuple[str, str] | None:
        """Any one stored document as (primary key, document id), or None when empty."""
        row = self._db.execute("SELECT key, doc_id FROM items LIMIT 1").fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    # -- meta ----------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def reset(self) -> None:
        """Forget everything: every document and every meta value."""
        self._db.execute("BEGIN")
        try:
            self._db.execute("DELETE FROM items")
            self._db.execute("DELETE FROM meta")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    # -- differences ---------------------------------------------------------------------
    def diff(
        self,
        collector: str,
        current: dict[str, Item],
        doc_id: Callable[[str], str],
        stable: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        previous: dict[str, Stored] | None = None,
        *,
        timestamp: str | None = None,
        nullable: Collection[str] | None = None,
        resync: bool = False,
    ) -> list[Change]:
        """The changes that turn the stored state of ``collector`` into ``current``.

        ``stable`` projects a document onto the fields whose change is worth an update
        (volatile figures such as free memory are left out of the comparison).
        ``timestamp`` is set as ``@timestamp`` on every created or updated document.
        An update sets each field that disappeared to null, if ``nullable`` (the index's
        fields; None: any) has it: a strict index refuses even a null for a field it lacks.
        ``resync`` sends every unchanged document again, whole, as an update.
        """
        old = self.items(collector) if previous is None else previous
        changes: list[Change] = []
        for key, item in current.items():
            digest = digest_of(stable(item.data) if stable else item.data)
            data = item.data if timestamp is None else {**item.data, TIMESTAMP: timestamp}
            was = old.get(key)
            if was is None:
                changes.append(
                    Change("create", collector, key, doc_id(key), data, digest, item.extra)
                )
            elif was.digest != digest:
                gone = [p for p in vanished(was.data, data) if nullable is None or p in nullable]
                sent = with_nulls(data, gone) if gone else None
                changes.append(
                    Change(
                        "update", collector, key, was.doc_id, data, digest, item.extra, sent=sent
                    )
                )
            elif resync:
                # The server may have lost it: send what it should hold (the stored
                # document, with the time of its last change), whole.
                changes.append(
                    Change(
                        "update",
                        collector,
                        key,
                        was.doc_id,
                        was.data,
                        was.digest,
                        item.extra,
                        resync=True,
                    )
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
