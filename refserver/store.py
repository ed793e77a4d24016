"""The server's SQLite store: agents, received events, stateful documents, commands, results.

One connection shared by the event loop and worker threads behind a lock; WAL with
``synchronous=NORMAL`` so a commit does not wait for the disk (the server is a test and demo
peer, and a crash may lose the last moments — never corrupt the file). Bulk inserts use
``executemany`` in one transaction so tens of thousands of events per second fit.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from bus.indices import index_name
from refserver import documents
from refserver.documents import Key, StatefulRow

__all__ = ["AgentExists", "StatefulRow", "Store", "index_name", "new_document_id"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    uuid TEXT PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL, type TEXT,
    version TEXT, host TEXT, groups TEXT NOT NULL DEFAULT '[]', registered_at REAL NOT NULL,
    last_login REAL, last_seen REAL, user_agent TEXT
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, agent_id TEXT NOT NULL, kind TEXT NOT NULL, module TEXT NOT NULL,
    collector TEXT, doc_id TEXT, operation TEXT, header TEXT NOT NULL, data TEXT,
    received REAL NOT NULL
);
-- Counts kept beside the events instead of indexes on them: an index per column halves the
-- insert rate, and what tests and operators ask most is "how many".
CREATE TABLE IF NOT EXISTS event_counts (
    agent_id TEXT NOT NULL, kind TEXT NOT NULL, module TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (agent_id, kind, module)
);
CREATE TABLE IF NOT EXISTS documents (
    idx TEXT NOT NULL, doc_id TEXT NOT NULL, agent_id TEXT NOT NULL, data TEXT,
    updated REAL NOT NULL, PRIMARY KEY (idx, doc_id)
);
CREATE TABLE IF NOT EXISTS commands (
    document_id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, group_name TEXT, name TEXT NOT NULL,
    args TEXT, timeout INTEGER, request_id TEXT NOT NULL, order_id TEXT NOT NULL,
    status TEXT NOT NULL, created REAL NOT NULL, sent_at REAL, deliveries INTEGER NOT NULL
    DEFAULT 0, result_code INTEGER, result_message TEXT, result_at REAL
);
CREATE INDEX IF NOT EXISTS commands_pending ON commands (agent_id, status);
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY, document_id TEXT NOT NULL, agent_id TEXT NOT NULL,
    code INTEGER, message TEXT, received REAL NOT NULL
);
"""


class AgentExists(Exception):
    """An agent with this id is already enrolled."""


def new_document_id() -> str:
    """A 20-character id shaped like the indexer's (e.g. ``A8-62pMBBmC6Jrvqj9kW``)."""
    return secrets.token_urlsafe(15)


class Store:
    """Everything the server keeps, in ``<data_dir>/server.db``."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Key hashes live here: owner-only, like every credential file (SQLite gives its
        # -wal and -shm files the database's mode).
        path.touch(mode=0o600, exist_ok=True)
        os.chmod(path, 0o600)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- agents -----------------------------------------------------------------------------
    def add_agent(
        self,
        *,
        uuid: str,
        name: str,
        key_hash: str,
        type: str | None,
        version: str | None,
        host: dict[str, Any] | None,
    ) -> None:
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO agents (uuid, name, key_hash, type, version, host, registered_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (uuid, name, key_hash, type, version, _dumps(host), time.time()),
                )
            except sqlite3.IntegrityError as exc:
                raise AgentExists(uuid) from exc

    def agent(self, uuid: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM agents WHERE uuid = ?", (uuid,)).fetchone()
        return _agent_dict(row) if row else None

    def key_hash(self, uuid: str) -> str | None:
        """The stored PBKDF2 hash of an agent's key; None for an unknown agent."""
        with self._lock:
            row = self._db.execute("SELECT key_hash FROM agents WHERE uuid = ?", (uuid,)).fetchone()
        return None if row is None else str(row[0])

    def agents(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM agents ORDER BY registered_at").fetchall()
        return [_agent_dict(row) for row in rows]

    def agents_in_group(self, group: str) -> list[str]:
        return [a["id"] for a in self.agents() if group in a["groups"]]

    def logged_in(self, uuid: str, when: float) -> None:
        with self._lock:
            self._db.execute("UPDATE agents SET last_login = ? WHERE uuid = ?", (when, uuid))

    def seen(self, uuid: str, groups: list[str] | None, user_agent: str | None) -> None:
        """Record that an agent sent events, with the groups its metadata line declares."""
        with self._lock:
            if groups is None:
                self._db.execute(
                    "UPDATE agents SET last_seen = ?, user_agent = coalesce(?, user_agent)"
                    " WHERE uuid = ?",
                    (time.time(), user_agent, uuid),
                )
            else:
                self._db.execute(
                    "UPDATE agents SET last_seen = ?, groups = ?,"
                    " user_agent = coalesce(?, user_agent) WHERE uuid = ?",
                    (time.time(), _dumps(groups), user_agent, uuid),
                )

    # -- events -----------------------------------------------------------------------------
    def add_stateless(self, agent_id: str, rows: Sequence[tuple[str, str, str, str]]) -> None:
        """Store stateless events: rows of (module, collector, header line, data line)."""
        now = time.time()
        with self._lock, self._transaction():
            self._db.executemany(
                "INSERT INTO events (agent_id, kind, module, collector, header, data, received)"
                " VALUES (?, 'stateless', ?, ?, ?, ?, ?)",
                [(agent_id, m, c, h, d, now) for m, c, h, d in rows],
            )
            self._count(agent_id, "stateless", Counter(row[0] for row in rows))

    def add_stateful(
        self,
        agent_id: str,
        rows: Sequence[StatefulRow],
        *,
        strict: bool = True,
        upsert: bool = False,
    ) -> list[dict[str, Any]]:
        """Apply stateful events to their documents as the indexer would
        (:mod:`refserver.documents`) and record them; one result per event, in order.

        An item refused by the mapping check is neither stored nor recorded as received.
        """
        now = time.time()
        with self._lock, self._transaction():
            keys = {documents.key_of(r) for r in rows if r.module != "command"}
            applied = documents.apply(rows, self._current(keys), strict=strict, upsert=upsert)
            kept = [r for r, refused in zip(rows, applied.refused, strict=True) if not refused]
            self._db.executemany(
                "INSERT INTO events (agent_id, kind, module, collector, doc_id, operation,"
                " header, data, received) VALUES (?, 'stateful', ?, ?, ?, ?, ?, ?, ?)",
                [
                    (agent_id, r.module, r.collector, r.doc_id, r.operation, r.header, r.data, now)
                    for r in kept
                ],
            )
            self._count(agent_id, "stateful", Counter(row.module for row in kept))
            self._write_documents(agent_id, applied.changes, now)
            results = applied.results
            for i, row in enumerate(rows):
                if row.module == "command" and not results[i]:
                    index = index_name(row.module, row.collector)
                    results[i] = self._command_result(index, agent_id, row, now)
        return results

    def _count(self, agent_id: str, kind: str, per_module: Counter[str]) -> None:
        self._db.executemany(
            "INSERT INTO event_counts (agent_id, kind, module, n) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (agent_id, kind, module) DO UPDATE SET n = n + excluded.n",
            [(agent_id, kind, module, n) for module, n in per_module.items()],
        )

    def _command_result(
        self, index: str, agent_id: str, row: StatefulRow, now: float
    ) -> dict[str, Any]:
        result = row.result or {}
        code, message = result.get("code"), result.get("message")
        self._db.execute(
            "INSERT INTO results (document_id, agent_id, code, message, received)"
            " VALUES (?, ?, ?, ?, ?)",
            (row.doc_id, agent_id, code, message, now),
        )
        if row.operation == "delete":
            cursor = self._db.execute("DELETE FROM commands WHERE document_id = ?", (row.doc_id,))
            found = cursor.rowcount > 0
            return documents.item(
                index, row.doc_id, "deleted" if found else "not_found", 200 if found else 404
            )
        # Result code 2 means "in progress": the command is not done yet.
        status = "in_progress" if code == 2 else "done"
        cursor = self._db.execute(
            "UPDATE commands SET status = ?, result_code = ?, result_message = ?, result_at = ?"
            " WHERE document_id = ?",
            (status, code, message, now, row.doc_id),
        )
        if cursor.rowcount == 0:
            return documents.item(index, row.doc_id, "not_found", 404)
        return documents.item(index, row.doc_id, "updated", 200)

    def _write_documents(self, agent_id: str, changes: dict[Key, str | None], now: float) -> None:
        """Write each changed document's final state: two executemany per request."""
        self._db.executemany(
            "DELETE FROM documents WHERE idx = ? AND doc_id = ?",
            [key for key, data in changes.items() if data is None],
        )
        self._db.executemany(
            "INSERT INTO documents (idx, doc_id, agent_id, data, updated) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (idx, doc_id) DO UPDATE SET data = excluded.data,"
            " agent_id = excluded.agent_id, updated = excluded.updated",
            [
                (idx, doc, agent_id, data, now)
                for (idx, doc), data in changes.items()
                if data is not None
            ],
        )

    def _current(self, keys: set[Key]) -> dict[Key, str]:
        """The stored text of those (index, id) documents that exist."""
        found: dict[Key, str] = {}
        by_index: dict[str, list[str]] = {}
        for index, doc_id in keys:
            by_index.setdefault(index, []).append(doc_id)
        for index, ids in by_index.items():
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT doc_id, data FROM documents WHERE idx = ? AND doc_id IN ({marks})",
                    (index, *chunk),
                ).fetchall()
                found.update(((index, row[0]), row[1] or "{}") for row in rows)
        return found

    def events(
        self,
        *,
        module: str | None = None,
        agent: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
        after: int = 0,
    ) -> list[dict[str, Any]]:
        where, params = _filters(module, agent, kind)
        sql = f"SELECT * FROM events WHERE seq > ?{where} ORDER BY seq"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._db.execute(sql, (after, *params)).fetchall()
        return [_event_dict(row) for row in rows]

    def count_events(
        self, *, module: str | None = None, agent: str | None = None, kind: str | None = None
    ) -> int:
        where, params = _filters(module, agent, kind)
        with self._lock:
            row = self._db.execute(
                f"SELECT coalesce(sum(n), 0) FROM event_counts WHERE 1{where}", params
            ).fetchone()
        return int(row[0])

    def documents(self, index: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM documents"
        params: tuple[str, ...] = ()
        if index is not None:
            sql, params = sql + " WHERE idx = ?", (index,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY idx, doc_id", params).fetchall()
        return [
            {
                "index": r["idx"],
                "id": r["doc_id"],
                "agent_id": r["agent_id"],
                "data": _loads(r["data"]),
                "updated": r["updated"],
            }
            for r in rows
        ]

    # -- commands ---------------------------------------------------------------------------
    def queue_command(
        self,
        agent_ids: Iterable[str],
        *,
        name: str,
        args: dict[str, Any] | None,
        timeout: int | None,
        group: str | None = None,
    ) -> list[str]:
        """Queue one command per agent; returns their document ids in order."""
        now = time.time()
        order_id = new_document_id()
        rows = [
            (
                new_document_id(),
                agent_id,
                group,
                name,
                _dumps(args),
                timeout,
                new_document_id(),
                order_id,
                now,
            )
            for agent_id in agent_ids
        ]
        with self._lock, self._transaction():
            self._db.executemany(
                "INSERT INTO commands (document_id, agent_id, group_name, name, args, timeout,"
                " request_id, order_id, status, created) VALUES (?,?,?,?,?,?,?,?,'pending',?)",
                rows,
            )
        return [row[0] for row in rows]

    def has_pending(self, agent_id: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM commands WHERE agent_id = ? AND status = 'pending' LIMIT 1",
                (agent_id,),
            ).fetchone()
        return row is not None

    def claim_commands(self, agent_id: str) -> list[dict[str, Any]]:
        """Take every pending command of an agent and mark it sent (in queue order)."""
        now = time.time()
        with self._lock, self._transaction():
            rows = self._db.execute(
                "SELECT * FROM commands WHERE agent_id = ? AND status = 'pending'"
                " ORDER BY created, rowid",
                (agent_id,),
            ).fetchall()
            self._db.executemany(
                "UPDATE commands SET status = 'sent', sent_at = ?, deliveries = deliveries + 1"
                " WHERE document_id = ?",
                [(now, row["document_id"]) for row in rows],
            )
        return [_command_dict(row) for row in rows]

    def resend(self, document_id: str) -> str | None:
        """Make a command deliverable again; returns its agent id, None if unknown."""
        with self._lock:
            row = self._db.execute(
                "SELECT agent_id FROM commands WHERE document_id = ?", (document_id,)
            ).fetchone()
            if row is None:
                return None
            self._db.execute(
                "UPDATE commands SET status = 'pending' WHERE document_id = ?", (document_id,)
            )
        return str(row["agent_id"])

    def commands(self, agent: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM commands"
        params: tuple[str, ...] = ()
        if agent is not None:
            sql, params = sql + " WHERE agent_id = ?", (agent,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created, rowid", params).fetchall()
        return [_command_dict(row) for row in rows]

    def results(self, document_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM results"
        params: tuple[str, ...] = ()
        if document_id is not None:
            sql, params = sql + " WHERE document_id = ?", (document_id,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq", params).fetchall()
        return [
            {
                "document_id": r["document_id"],
                "agent_id": r["agent_id"],
                "code": r["code"],
                "message": r["message"],
                "received": r["received"],
            }
            for r in rows
        ]

    # -- helpers ----------------------------------------------------------------------------
    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN … COMMIT, ROLLBACK on error (the connection runs in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _filters(module: str | None, agent: str | None, kind: str | None) -> tuple[str, tuple]:
    where, params = "", []
    for column, value in (("module", module), ("agent_id", agent), ("kind", kind)):
        if value is not None:
            where += f" AND {column} = ?"
            params.append(value)
    return where, tuple(params)


def _dumps(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _agent_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["uuid"],
        "name": row["name"],
        "type": row["type"],
        "version": row["version"],
        "host": _loads(row["host"]),
        "groups": _loads(row["groups"]) or [],
        "registered_at": row["registered_at"],
        "last_login": row["last_login"],
        "last_seen": row["last_seen"],
        "user_agent": row["user_agent"],
    }


def _event_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "seq": row["seq"],
        "agent_id": row["agent_id"],
        "type": row["kind"],
        "module": row["module"],
        "collector": row["collector"],
        "id": row["doc_id"],
        "operation": row["operation"],
        "header": _loads(row["header"]),
        "data": _loads(row["data"]),
        "received": row["received"],
    }


def _command_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "document_id": row["document_id"],
        "agent_id": row["agent_id"],
        "group": row["group_name"],
        "name": row["name"],
        "args": _loads(row["args"]),
        "timeout": row["timeout"],
        "request_id": row["request_id"],
        "order_id": row["order_id"],
        "status": row["status"],
        "created": row["created"],
        "sent_at": row["sent_at"],
        "deliveries": row["deliveries"],
        "result": None
        if row["result_at"] is None
        else {"code": row["result_code"], "message": row["result_message"]},
        "result_at": row["result_at"],
    }
