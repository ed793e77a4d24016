"""The quarantine (dead-letter queue): events the server refused one by one.

When the server answers 400 to a batch, the sender bisects it down to the offending
event(s); a stateful item can also fail on its own inside a 200. Such an event can never
be delivered as it is, and retrying it would block everything behind it, so it moves
here (``queue/quarantine.db``) with the server's status and message. An operator lists,
retries (moves back to the queue) or drops them with ``agentbus quarantine``, which talks
to the running forwarder over its control socket: one process owns this file.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from core.storage import private_db

#: longest event text shown by ``list``
SHOW_CHARS = 2000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    status INTEGER NOT NULL,
    message TEXT NOT NULL,
    body BLOB NOT NULL
)
"""


class Quarantine:
    """Quarantined events, one row each (its rendered NDJSON lines)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        private_db(path)  # 0600 whatever the umask, before SQLite creates it
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._db.commit()

    def add(self, kind: str, events: list[bytes], status: int, message: str) -> int:
        """Store events that the server refused with ``status`` and ``message``."""
        now = time.time()
        with self._lock, self._db:
            self._db.executemany(
                "INSERT INTO quarantine (at, kind, status, message, body) VALUES (?, ?, ?, ?, ?)",
                [(now, kind, status, message, body) for body in events],
            )
        return len(events)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0])

    def entries(self, limit: int = 100, after: int = 0) -> list[dict[str, Any]]:
        """Entries with an id above ``after``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, at, kind, status, message, body FROM quarantine "
                "WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        out = []
        for rid, at, kind, status, message, body in rows:
            text = bytes(body).decode("utf-8", "replace")
            out.append(
                {
                    "id": rid,
                    "at": at,
                    "kind": kind,
                    "status": status,
                    "message": message,
                    "event": text if len(text) <= SHOW_CHARS else text[:SHOW_CHARS] + "...",
                }
            )
        return out

    def get(self, ids: list[int] | None) -> list[tuple[int, str, bytes]]:
        """(id, kind, body) of the given entries, or of every entry when ``ids`` is None."""
        with self._lock:
            if ids is None:
                rows = self._db.execute(
                    "SELECT id, kind, body FROM quarantine ORDER BY id"
                ).fetchall()
            else:
                rows = self._db.execute(
                    f"SELECT id, kind, body FROM quarantine WHERE id IN "
                    f"({','.join('?' * len(ids))}) ORDER BY id",
                    ids,
                ).fetchall()
        return [(int(r[0]), str(r[1]), bytes(r[2])) for r in rows]

    def remove(self, ids: list[int]) -> int:
        if not ids:
            return 0
        with self._lock, self._db:
            cur = self._db.execute(
                f"DELETE FROM quarantine WHERE id IN ({','.join('?' * len(ids))})", ids
            )
        return int(cur.rowcount)

    def close(self) -> None:
        with self._lock:
            self._db.close()
