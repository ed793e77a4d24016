"""The on-disk queue of one event kind: persist-queue's SQLiteAckQueue, holding chunks.

One file per kind (``queue/stateless.db``, ``queue/stateful.db``); this process owns it.
Each row is one chunk: rendered NDJSON lines plus their event count and the arrival time
of the first event. We build on persist-queue's ``SQLiteAckQueue`` (its connections in WAL
mode, one for putting and one for getting, its locks, its transactions, its resume of
unacked rows after a restart, its ``clear_acked_data``) and change three things, each
measured on this machine:

- **Column order.** persist-queue's table puts ``status`` after the ``data`` blob, so every
  ``WHERE status < ?`` makes SQLite walk each row's overflow pages: with 256 KB chunks
  ``get()`` ran at under 100/s. Our table puts the small columns first.
- **No write on get.** ``get()`` marks a row "unack" with an UPDATE and a commit. The mark
  only matters across a restart, and a restart resets it anyway (``resume_unack_tasks``),
  so the senders read rows past an in-memory cursor instead; nothing is written until the
  ack.
- **Ack deletes, in bulk.** A batch's chunks are acked together in one transaction that
  deletes them: the same end state as ``ack()`` per row followed by
  ``clear_acked_data(max_delete=None, keep_latest=None)``, in one commit instead of many.
  ``clear_acked_data`` still runs regularly for rows acked the ordinary way.

Byte accounting (``max_queue_bytes``) counts every row not yet acked, in flight or not.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persistqueue import SQLiteAckQueue
from persistqueue.sqlbase import with_conditional_transaction

from forwarder.chunker import Chunk

#: rows looked at per take (their small columns only)
HEAD_ROWS = 256
#: the WAL file is truncated back to this size after checkpoints
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
#: persist-queue status values (persistqueue.sqlackqueue.AckStatus)
READY_BELOW = 2  # inited (0) and ready (1) rows are waiting to be sent
ACKED = 5


class _Raw:
    """persist-queue serializer that stores bytes as they are (chunks are already rendered)."""

    @staticmethod
    def dumps(obj: Any, **_kw: Any) -> Any:
        return obj

    @staticmethod
    def loads(data: Any) -> Any:
        return data


class ChunkQueue(SQLiteAckQueue):  # type: ignore[misc]
    """SQLiteAckQueue with the small columns before the blob, an event count, bulk acks."""

    _TABLE_NAME = "ack_queue"
    _SQL_CREATE = (
        "CREATE TABLE IF NOT EXISTS {table_name} ("
        "{key_column} INTEGER PRIMARY KEY AUTOINCREMENT, "
        "status INTEGER, timestamp FLOAT, events INTEGER, data BLOB)"
    )
    _SQL_INSERT = "INSERT INTO {table_name} (data, timestamp, events, status) VALUES (?, ?, ?, 0)"

    def __init__(self, directory: str, db_file_name: str) -> None:
        super().__init__(
            directory,
            name="chunks",
            db_file_name=db_file_name,
            multithreading=True,
            auto_commit=True,
            serializer=_Raw,
            timeout=30.0,
        )
        for conn in {id(c): c for c in (self._getter, self._putter)}.values():
            assert conn is not None
            conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")

    @property
    def _reader(self) -> sqlite3.Connection:
        conn = self._getter
        assert conn is not None
        return conn  # type: ignore[no-any-return]

    def put_chunk(self, chunk: Chunk) -> int:
        """Insert one chunk (one committed transaction); returns its row id."""
        rowid = self._insert_into(chunk.body, chunk.ts, chunk.events)
        self.total += 1
        self.put_event.set()
        return int(rowid)

    def totals(self) -> tuple[int, int, int]:
        """(rows, events, bytes) of every row not acked."""
        with self.action_lock:
            row = self._reader.execute(
                f"SELECT COUNT(*), IFNULL(SUM(events), 0), IFNULL(SUM(LENGTH(data)), 0) "
                f"FROM {self._table_name} WHERE status < ?",
                (ACKED,),
            ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def heads(self, after: int, limit: int) -> list[tuple[int, int, int, float]]:
        """(id, events, bytes, timestamp) of ready rows after ``after``, oldest first."""
        with self.action_lock:
            return self._reader.execute(
                f"SELECT _id, events, LENGTH(data), timestamp FROM {self._table_name} "
                f"WHERE _id > ? AND status < ? ORDER BY _id LIMIT ?",
                (after, READY_BELOW, limit),
            ).fetchall()

    def bodies(self, ids: list[int]) -> dict[int, bytes]:
        with self.action_lock:
            rows = self._reader.execute(
                f"SELECT _id, data FROM {self._table_name} "
                f"WHERE _id IN ({','.join('?' * len(ids))})",
                ids,
            ).fetchall()
        return {r[0]: r[1] for r in rows}

    def first_timestamp(self) -> float | None:
        """Arrival time of the oldest event not acked."""
        with self.action_lock:
            row = self._reader.execute(
                f"SELECT timestamp FROM {self._table_name} WHERE status < ? ORDER BY _id LIMIT 1",
                (ACKED,),
            ).fetchone()
        return None if row is None else float(row[0])

    @with_conditional_transaction
    def delete_ids(self, ids: list[int]) -> tuple[str, list[int]]:
        """Delete rows (our bulk ack) in one transaction."""
        sql = f"DELETE FROM {self._table_name} WHERE _id IN ({','.join('?' * len(ids))})"
        return sql, ids


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A chunk read back from the queue, with its row id."""

    id: int
    events: int
    body: bytes
    ts: float


class Store:
    """One kind's queue with byte accounting, a capacity policy and a read cursor.

    Senders ``take()`` ready chunks (rows after the cursor) and ``ack()`` them when the
    server said 2xx; a chunk taken but never acked (a crash, a stop) is read again after a
    restart. Thread-safe: the receiver puts, sender threads take and ack, the control
    thread reads figures.
    """

    def __init__(
        self,
        directory: Path,
        kind: str,
        *,
        max_bytes: int,
        drop_oldest: bool = False,
    ) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.kind = kind
        self.path = directory / f"{kind}.db"
        self.max_bytes = max_bytes
        self.drop_oldest = drop_oldest
        self._q = ChunkQueue(str(directory), f"{kind}.db")
        self.cond = threading.Condition()
        rows, events, nbytes = self._q.totals()
        #: rows, events and bytes stored and not acked (in flight included)
        self.rows, self.events, self.bytes = rows, events, nbytes
        #: bytes promised to puts that are being committed right now
        self._reserved = 0
        #: rows with an id up to the cursor have been handed to senders
        self._cursor = 0
        self.inflight_events = 0
        self.inflight_bytes = 0
        #: chunks handed to senders and not acked yet: id → (events, bytes), oldest first
        self._inflight: dict[int, tuple[int, int]] = {}
        #: in-flight chunks that drop_oldest deleted under a sender's feet
        self._voided: set[int] = set()
        #: events dropped to make room (drop_oldest)
        self.dropped_events = 0
        self._head_ts: float | None = None
        self._head_known = False

    # -- receiver side ---------------------------------------------------------------
    def has_room(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more fit (dropping old chunks if the policy allows)."""
        with self.cond:
            return self._fits(nbytes) or self.drop_oldest

    def put(self, chunk: Chunk, *, force: bool = False) -> bool:
        """Commit a chunk; False (nothing stored) when the queue is full and may not drop.

        ``force`` skips the capacity check (an operator moving events back from quarantine).
        """
        need = len(chunk.body)
        with self.cond:
            if not force and not self._fits(need):
                if self.drop_oldest:
                    self._drop_until_fits(need)
                if not self._fits(need):
                    return False
            self._reserved += need
        try:
            self._q.put_chunk(chunk)
        finally:
            with self.cond:
                self._reserved -= need
        with self.cond:
            self.rows += 1
            self.events += chunk.events
            self.bytes += need
            if self.ready_events == chunk.events:
                self._head_known = False  # the queue was empty: this is the new head
            self.cond.notify_all()
        return True

    def _fits(self, need: int) -> bool:
        used = self.bytes + self._reserved
        # An empty queue takes any chunk, however big, so nothing can deadlock.
        return used == 0 or used + need <= self.max_bytes

    def _drop_until_fits(self, need: int) -> None:
        # The oldest chunks nobody is sending are right after the cursor. When those are
        # not enough (a long outage: the probe's batch holds the oldest events), chunks in
        # flight go too; their sender notices and stops resending them.
        while not self._fits(need):
            heads = self._q.heads(self._cursor, 64)
            if heads:
                victims = [(h[0], h[1], h[2]) for h in heads]
            elif self._inflight:
                victims = [(cid, ev, nb) for cid, (ev, nb) in self._inflight.items()]
            else:
                return
            chosen: list[tuple[int, int, int]] = []
            freed = 0
            for victim in victims:
                chosen.append(victim)
                freed += victim[2]
                if self.bytes + self._reserved - freed + need <= self.max_bytes:
                    break
            self._q.delete_ids([v[0] for v in chosen])
            events = sum(v[1] for v in chosen)
            self.rows -= len(chosen)
            self.events -= events
            self.bytes -= freed
            self.dropped_events += events
            for cid, ev, nb in chosen:
                if self._inflight.pop(cid, None) is not None:
                    self._voided.add(cid)
                    self.inflight_events -= ev
                    self.inflight_bytes -= nb
            self._head_known = False

    def voided(self, chunk_id: int) -> bool:
        """Whether drop_oldest deleted this in-flight chunk (do not send it any more)."""
        return chunk_id in self._voided

    # -- sender side -----------------------------------------------------------------
    @property
    def ready_events(self) -> int:
        return self.events - self.inflight_events

    @property
    def ready_bytes(self) -> int:
        return self.bytes - self.inflight_bytes

    def head_ts(self) -> float | None:
        """Arrival time of the oldest ready event (call with ``cond`` held)."""
        if not self._head_known:
            heads = self._q.heads(self._cursor, 1)
            self._head_ts = heads[0][3] if heads else None
            self._head_known = True
        return self._head_ts

    def take(self, max_bytes: int, max_events: int) -> list[StoredChunk]:
        """The oldest ready chunks, up to the limits (at least one if any is ready)."""
        with self.cond:
            heads = self._q.heads(self._cursor, HEAD_ROWS)
            chosen: list[tuple[int, int, int, float]] = []
            nbytes = nevents = 0
            for head in heads:
                if chosen and (nbytes + head[2] > max_bytes or nevents + head[1] > max_events):
                    break
                chosen.append(head)
                nbytes += head[2]
                nevents += head[1]
            if not chosen:
                return []
            bodies = self._q.bodies([h[0] for h in chosen])
            self._cursor = chosen[-1][0]
            for h in chosen:
                self._inflight[h[0]] = (h[1], h[2])
            self.inflight_events += nevents
            self.inflight_bytes += nbytes
            self._head_known = False
        return [StoredChunk(h[0], h[1], bodies[h[0]], h[3]) for h in chosen if h[0] in bodies]

    def ack(self, chunks: list[StoredChunk]) -> None:
        """The server has these chunks (or they were dropped): delete them in one transaction."""
        with self.cond:
            live = [c for c in chunks if c.id not in self._voided]
            self._voided.difference_update(c.id for c in chunks)
        if live:
            self._q.delete_ids([c.id for c in live])
        events = sum(c.events for c in live)
        nbytes = sum(len(c.body) for c in live)
        with self.cond:
            for c in live:
                self._inflight.pop(c.id, None)
            self.rows -= len(live)
            self.events -= events
            self.bytes -= nbytes
            self.inflight_events -= events
            self.inflight_bytes -= nbytes
            self.cond.notify_all()

    # -- upkeep and figures ------------------------------------------------------------
    def clear_acked(self) -> None:
        """Remove rows acked the ordinary persist-queue way (none in normal operation)."""
        self._q.clear_acked_data(max_delete=None, keep_latest=None)

    def oldest_age(self, now: float | None = None) -> float | None:
        """Seconds the oldest event not yet acked has been waiting."""
        ts = self._q.first_timestamp()
        return None if ts is None else max(0.0, (now or time.time()) - ts)

    def figures(self) -> dict[str, Any]:
        with self.cond:
            out: dict[str, Any] = {
                "events": self.events,
                "bytes": self.bytes,
                "chunks": self.rows,
                "in_flight_events": self.inflight_events,
                "max_bytes": self.max_bytes,
                "dropped": self.dropped_events,
            }
        age = self.oldest_age()
        out["oldest_age"] = round(age, 3) if age is not None else None
        return out

    def close(self) -> None:
        self._q.close()
