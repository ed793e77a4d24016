"""commands.db: every command on disk before it is published, until its result is delivered.

Three tables in one SQLite file (WAL, ``synchronous=FULL``: commands are few, and each
must survive a power cut as well as a kill -9):

- ``commands`` — a command from receipt until its final result was accepted by the
  forwarder; ``state`` is ``received`` (not published yet), ``published`` (waiting for an
  executor's ack), ``acked`` (an executor runs it), ``restarting`` (a restart reported
  as in progress) or ``done`` (final result waiting in the outbox);
- ``outbox`` — results not yet accepted by the forwarder's ingest, in order; ``final = 0``
  for an "in progress" report;
- ``executed`` — document ids whose final result was delivered, so a command the server
  sends again is not run again (pruned to the newest :data:`EXECUTED_KEEP`).

A result and the state change it causes are written in one transaction, so a crash leaves
either the command in flight or its result in the outbox, never neither.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from commander.command import ServerCommand
from core.storage import private_db

#: how many delivered document ids are remembered for duplicate detection
EXECUTED_KEEP = 100_000

STATES = ("received", "published", "acked", "restarting", "done")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    document_id TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    args        TEXT NOT NULL,
    timeout     REAL NOT NULL,
    received_at REAL NOT NULL,
    state       TEXT NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id TEXT NOT NULL,
    code        INTEGER NOT NULL,
    message     TEXT NOT NULL,
    final       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS executed (
    document_id TEXT PRIMARY KEY,
    code        INTEGER NOT NULL,
    finished_at REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class StoredCommand:
    """A command with its state as persisted."""

    command: ServerCommand
    state: str


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A result waiting for the forwarder."""

    seq: int
    document_id: str
    code: int
    message: str
    final: bool
    #: the action name, when the command is still in the commands table
    name: str | None


class CommandStore:
    """Thread-safe access to commands.db (one connection behind a lock; volumes are tiny)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        # Created 0600 before SQLite opens it, so commands.db-wal (command arguments) is
        # 0600 too: SQLite gives its side files the mode of the database file.
        private_db(self.path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- receipt -----------------------------------------------------------------------
    def add(self, command: ServerCommand) -> bool:
        """Persist a new command (state ``received``); False if its id was seen before."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if self._known(command.document_id):
                return False
            self._db.execute(
                "INSERT INTO commands VALUES (?, ?, ?, ?, ?, 'received', ?)",
                (
                    command.document_id,
                    command.name,
                    json.dumps(command.args, separators=(",", ":")),
                    command.timeout,
                    command.received_at,
                    time.time(),
                ),
            )
            return True

    def add_answered(self, document_id: str, code: int, message: str) -> bool:
        """Record a command answered without running it (invalid); False if seen before."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if self._known(document_id):
                return False
            self._db.execute(
                "INSERT INTO commands VALUES (?, '', '{}', 0, ?, 'done', ?)",
                (document_id, time.time(), time.time()),
            )
            self._db.execute(
                "INSERT INTO outbox (document_id, code, message, final) VALUES (?, ?, ?, 1)",
                (document_id, code, message),
            )
            return True

    def _known(self, document_id: str) -> bool:
        for table in ("commands", "executed"):
            row = self._db.execute(
                f"SELECT 1 FROM {table} WHERE document_id = ?", (document_id,)
            ).fetchone()
            if row:
                return True
        return False

    # -- progress ----------------------------------------------------------------------
    def set_state(self, document_id: str, state: str) -> None:
        assert state in STATES, state
        with self._lock, self._db:
            self._db.execute(
                "UPDATE commands SET state = ?, updated_at = ? WHERE document_id = ?",
                (state, time.time(), document_id),
            )

    def report(self, document_id: str, code: int, message: str, *, final: bool = True) -> None:
        """Queue a result for the server; a final one also closes the command (state done).

        A non-final report (code 2) of a ``restart`` sets the state ``restarting``.
        """
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO outbox (document_id, code, message, final) VALUES (?, ?, ?, ?)",
                (document_id, code, message, int(final)),
            )
            if final:
                state = "done"
            else:
                row = self._db.execute(
                    "SELECT name FROM commands WHERE document_id = ?", (document_id,)
                ).fetchone()
                state = "restarting" if row and row[0] == "restart" else "acked"
            self._db.execute(
                "UPDATE commands SET state = ?, updated_at = ? WHERE document_id = ?",
                (state, time.time(), document_id),
            )

    def in_flight(self) -> list[StoredCommand]:
        """Every command without a final result, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT document_id, name, args, timeout, received_at, state FROM commands "
                "WHERE state != 'done' ORDER BY received_at"
            ).fetchall()
        return [
            StoredCommand(
                ServerCommand(
                    document_id=r[0],
                    name=r[1],
                    args=json.loads(r[2]),
                    timeout=r[3],
                    received_at=r[4],
                ),
                r[5],
            )
            for r in rows
        ]

    def get(self, document_id: str) -> StoredCommand | None:
        for item in self.in_flight():
            if item.command.document_id == document_id:
                return item
        return None

    # -- delivery ----------------------------------------------------------------------
    def outbox(self, limit: int = 100) -> list[OutboxItem]:
        """The oldest results waiting for the forwarder."""
        with self._lock:
            rows = self._db.execute(
                "SELECT o.seq, o.document_id, o.code, o.message, o.final, c.name FROM outbox o "
                "LEFT JOIN commands c ON c.document_id = o.document_id ORDER BY o.seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [OutboxItem(r[0], r[1], r[2], r[3], bool(r[4]), r[5]) for r in rows]

    def delivered(self, items: list[OutboxItem]) -> None:
        """The forwarder has these results on disk: forget them, and close final commands."""
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for item in items:
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (item.seq,))
                if item.final:
                    self._db.execute(
                        "DELETE FROM commands WHERE document_id = ?", (item.document_id,)
                    )
                    self._db.execute(
                        "INSERT OR REPLACE INTO executed VALUES (?, ?, ?)",
                        (item.document_id, item.code, now),
                    )

    def prune_executed(self, keep: int = EXECUTED_KEEP) -> int:
        """Forget all but the newest ``keep`` delivered ids; returns how many were removed."""
        with self._lock, self._db:
            cur = self._db.execute(
                "DELETE FROM executed WHERE document_id NOT IN "
                "(SELECT document_id FROM executed ORDER BY finished_at DESC LIMIT ?)",
                (keep,),
            )
            return cur.rowcount

    def counts(self) -> dict[str, Any]:
        """Rows per table, and of commands per state (commander.metrics)."""
        with self._lock:
            out: dict[str, Any] = {
                "stored": dict(
                    self._db.execute("SELECT state, COUNT(*) FROM commands GROUP BY state")
                )
            }
            out["outbox"] = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            out["executed_remembered"] = self._db.execute(
                "SELECT COUNT(*) FROM executed"
            ).fetchone()[0]
        return out
