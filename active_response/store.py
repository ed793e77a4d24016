"""The timed responses in force, in the executor's own SQLite file.

An ``add`` with ``args.timeout`` is written here *before* its program runs (and removed
again if the program fails), so a kill -9 at any moment cannot leave a response in force
with nobody to undo it: at the next start the executor finds the row and runs the
``delete`` when it is due (at once, if it fell due while the executor was down). Times are
wall-clock Unix seconds, which mean the same after a restart or a reboot.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from active_response.message import Request

DB_NAME = "responses.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key        TEXT PRIMARY KEY,
    program    TEXT NOT NULL,
    request    TEXT NOT NULL,
    command_id TEXT NOT NULL,
    added_at   REAL NOT NULL,
    expires_at REAL NOT NULL,
    next_try   REAL NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0
)
"""


@dataclass(frozen=True, slots=True)
class InForce:
    key: str
    request: Request
    command_id: str
    added_at: float
    expires_at: float
    next_try: float
    attempts: int

    def view(self) -> dict[str, Any]:
        """What ``status`` and ``agentbus ar list`` show of it."""
        return {
            "program": self.request.program,
            "extra_args": self.request.extra_args,
            "alert": self.request.alert,
            "command_id": self.command_id,
            "added_at": self.added_at,
            "expires_at": self.expires_at,
            "delete_attempts": self.attempts,
        }


class Full(Exception):
    """As many timed responses are in force as the configuration allows."""


class Store:
    def __init__(self, state_dir: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(state_dir) / DB_NAME
        self._lock = threading.Lock()
        if readonly:
            self._db = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, check_same_thread=False
            )
            return
        Path(state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed row survives a power cut
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def schedule(self, request: Request, command_id: str, expires_at: float, limit: int) -> None:
        """Record a timed add (before it runs). The same response added again while in
        force is kept until the later of the two ends."""
        now = time.time()
        with self._lock, self._db:
            row = self._db.execute(
                "SELECT expires_at FROM responses WHERE key = ?", (request.key,)
            ).fetchone()
            if row is not None:
                expires_at = max(expires_at, row[0])
            elif self._db.execute("SELECT count(*) FROM responses").fetchone()[0] >= limit:
                raise Full(f"{limit} timed responses are in force already")
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                (request.key, request.program, json.dumps(asdict(request)), command_id, now,
                 expires_at, expires_at),
            )  # fmt: skip

    def remove(self, key: str) -> bool:
        with self._lock, self._db:
            return self._db.execute("DELETE FROM responses WHERE key = ?", (key,)).rowcount > 0

    def retry_later(self, key: str, when: float) -> int:
        """A failed automatic delete: try again at ``when``; returns the attempts so far."""
        with self._lock, self._db:
            self._db.execute(
                "UPDATE responses SET attempts = attempts + 1, next_try = ? WHERE key = ?",
                (when, key),
            )
            row = self._db.execute(
                "SELECT attempts FROM responses WHERE key = ?", (key,)
            ).fetchone()
        return int(row[0]) if row else 0

    def due(self, now: float) -> list[InForce]:
        return self._select("WHERE next_try <= ? ORDER BY next_try", (now,))

    def next_due(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT min(next_try) FROM responses").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def in_force(self) -> list[InForce]:
        return self._select("ORDER BY expires_at", ())

    def _select(self, where: str, params: tuple[Any, ...]) -> list[InForce]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, request, command_id, added_at, expires_at, next_try, attempts "
                f"FROM responses {where}",
                params,
            ).fetchall()
        return [
            InForce(key, Request(**json.loads(req)), cid, added, expires, next_try, attempts)
            for key, req, cid, added, expires, next_try, attempts in rows
        ]
