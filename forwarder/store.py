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
- **Ack deletes, in bulk.** A batch's chunks are acked by deleting them: the same end
  state as ``ack()`` per row followed by ``clear_acked_data(max_delete=None,
  keep_latest=None)``, without rewriting each row first. ``clear_acked_data`` still runs
  regularly for rows acked the ordinary way.
- **Group commit.** One writer thread per queue commits every put and every ack that
  queued up while the previous transaction was being synced, in one transaction: the
  number of fsyncs follows the disk's speed, not the number of chunks, and neither the
  receiver nor the senders wait for the disk (the acknowledged ingest path waits for its
  chunk's :class:`Commit`).

Byte accounting (``max_queue_bytes``) counts every row not yet acked, in flight or not.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger
from persistqueue import SQLiteAckQueue
from persistqueue.sqlbase import with_conditional_transaction

from bus.threads import start_thread
from core.storage import private_db
from forwarder.chunker import Chunk

#: rows looked at per take (their small columns only)
HEAD_ROWS = 256
#: SQLite page cache per connection (KiB)
CACHE_KIB = 512
#: SQLite page size of a new queue file
PAGE_SIZE = 65536
#: the WAL is checkpointed into the file when it grows past this
WAL_AUTOCHECKPOINT_BYTES = 16 * 1024 * 1024
#: the WAL file is truncated back to this size after checkpoints
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
#: pause before a failed write is tried again (seconds)
WRITE_RETRY_SECONDS = 1.0
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

    def _new_db_connection(self, path: str, multithreading: bool, timeout: float) -> Any:
        """persist-queue's connection, with big pages on a new file (before WAL is on).

        A 256 KB chunk is 64 overflow pages of 4 KB but 4 of 64 KB: measured here, writes
        went from ~160 to ~290 MB/s. The page size of an existing file does not change.
        """
        conn = sqlite3.connect(
            f"{path}/{self.db_file_name}", timeout=timeout, check_same_thread=not multithreading
        )
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_BYTES // PAGE_SIZE}")
        # Chunks are read once: a big page cache only holds RSS (the default is 2 MB per
        # connection, four connections).
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        return conn

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

    def containing(self, after: int, patterns: list[bytes]) -> list[tuple[int, int, bytes, float]]:
        """(id, events, data, timestamp) of ready rows after ``after`` whose data holds
        any of ``patterns`` (a scan of the queue: for rare questions only)."""
        out: list[tuple[int, int, bytes, float]] = []
        for start in range(0, len(patterns), 100):
            part = patterns[start : start + 100]
            where = " OR ".join("instr(data, ?) > 0" for _ in part)
            with self.action_lock:
                out.extend(
                    self._reader.execute(
                        f"SELECT _id, events, data, timestamp FROM {self._table_name} "
                        f"WHERE _id > ? AND status < ? AND ({where}) ORDER BY _id",
                        (after, READY_BELOW, *part),
                    ).fetchall()
                )
        return sorted({row[0]: row for row in out}.values())

    def first_timestamp(self) -> float | None:
        """Arrival time of the oldest event not acked."""
        with self.action_lock:
            row = self._reader.execute(
                f"SELECT timestamp FROM {self._table_name} WHERE status < ? ORDER BY _id LIMIT 1",
                (ACKED,),
            ).fetchone()
        return None if row is None else float(row[0])

    def write(self, chunks: list[Chunk], deletes: list[int]) -> None:
        """Insert ``chunks`` and delete rows ``deletes`` in ONE transaction (one fsync)."""
        insert = self._sql_insert
        putter = self._putter
        assert putter is not None
        with self.tran_lock, putter as tran:
            for chunk in chunks:
                tran.execute(insert, (chunk.body, chunk.ts, chunk.events))
            for start in range(0, len(deletes), 500):
                part = deletes[start : start + 500]
                tran.execute(
                    f"DELETE FROM {self._table_name} WHERE _id IN ({','.join('?' * len(part))})",
                    part,
                )
        if chunks:
            self.total += len(chunks)
            self.put_event.set()

    @with_conditional_transaction
    def delete_ids(self, ids: list[int]) -> tuple[str, list[int]]:
        """Delete rows (our bulk ack) in one transaction."""
        sql = f"DELETE FROM {self._table_name} WHERE _id IN ({','.join('?' * len(ids))})"
        return sql, ids


class Commit:
    """A chunk handed to the store's writer; ``done`` once its transaction committed."""

    __slots__ = ("chunk", "_event")

    def __init__(self, chunk: Chunk) -> None:
        self.chunk = chunk
        self._event = threading.Event()

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


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
        private_db(self.path)  # 0600 with its -wal/-shm, whatever the umask
        self._q = ChunkQueue(str(directory), f"{kind}.db")
        self.cond = threading.Condition()
        #: a commit wakes the waiters of ``cond`` only when it makes a batch due sooner:
        #: the queue was empty (a new oldest event), or the ready bytes or events reach
        #: these bounds (set by the batcher before it waits). Other commits only add to a
        #: batch that is due at its oldest event's time anyway: at 1,000 events/s, waking
        #: every sender at each commit was most of their CPU.
        self.wake_at_bytes = 0
        self.wake_at_events = 0
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
        #: monotonic time the current head was first looked at
        self.head_seen = 0.0
        #: commits made by the writer, and failed attempts
        self.commits = 0
        self.write_errors = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        #: the last write failed and none succeeded since (a full or failing disk)
        self.failing = False
        self._wcond = threading.Condition()
        self._puts: list[Commit] = []
        self._acks: list[int] = []
        self._closing = False
        self._close_deadline = 0.0
        #: called after each commit and each ack (see :meth:`add_listener`)
        self._listeners: list[Callable[[], None]] = []
        self._writer = start_thread(self._write_loop, f"write-{kind}")

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every commit and every ack, from the thread that made
        it: what the receiver waits for (a commit done, room made) has then changed. It
        must be quick and must not block (the receiver's is a :class:`bus.sockets.Waker`)."""
        self._listeners.append(callback)

    def _changed(self) -> None:
        for callback in self._listeners:
            callback()

    # -- receiver side ---------------------------------------------------------------
    def has_room(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more fit (dropping old chunks if the policy allows)."""
        with self.cond:
            return self._fits(nbytes) or self.drop_oldest

    @property
    def uncommitted_bytes(self) -> int:
        """Bytes handed to the writer and not committed yet."""
        return self._reserved

    def submit(self, chunk: Chunk, *, force: bool = False) -> Commit | None:
        """Hand a chunk to the writer; None (nothing stored) when the queue is full and may
        not drop. The chunk is on disk once the returned :class:`Commit` is ``done``.

        ``force`` skips the capacity check (shutdown, an operator moving events back from
        quarantine): a little over the limit is better than losing events.
        """
        need = len(chunk.body)
        with self.cond:
            if not force and not self._fits(need):
                if self.drop_oldest:
                    self._drop_until_fits(need)
                if not self._fits(need):
                    return None
            self._reserved += need
        commit = Commit(chunk)
        with self._wcond:
            self._puts.append(commit)
            self._wcond.notify()
        return commit

    def put(self, chunk: Chunk, *, force: bool = False) -> bool:
        """Store a chunk and wait until it is committed; False when the queue is full."""
        commit = self.submit(chunk, force=force)
        if commit is None:
            return False
        commit.wait()
        return True

    # -- the writer: group commit ----------------------------------------------------
    def _write_loop(self) -> None:
        """Commit every put and ack that queued up meanwhile in one transaction.

        While one fsync runs, the next puts and acks gather; so the number of commits
        adapts to the disk, not to the number of chunks. A failing disk (full, I/O error)
        is retried until it works: the receiver stops reading when too much waits here.
        """
        while True:
            with self._wcond:
                while not self._puts and not self._acks and not self._closing:
                    self._wcond.wait()
                if not self._puts and not self._acks:
                    return
                puts, self._puts = self._puts, []
                acks, self._acks = self._acks, []
            while True:
                try:
                    self._q.write([c.chunk for c in puts], acks)
                    self.failing = False
                    break
                except sqlite3.Error as exc:
                    self.failing = True
                    self.write_errors += 1
                    self.last_error = f"cannot write {self.path}: {exc}"
                    self.last_error_at = time.time()
                    logger.error("{}; retrying", self.last_error)
                    if self._closing and time.monotonic() > self._close_deadline:
                        logger.error("giving up: {} chunk(s) not committed", len(puts))
                        return
                    self._pause(time.monotonic() + WRITE_RETRY_SECONDS)
            with self.cond:
                for commit in puts:
                    need = len(commit.chunk.body)
                    self._reserved -= need
                    self.rows += 1
                    self.events += commit.chunk.events
                    self.bytes += need
                    self.commits += 1
                new_head = bool(puts) and self.ready_events == sum(c.chunk.events for c in puts)
                if new_head:
                    self._head_known = False  # the queue was empty: a new head
                if (
                    self.ready_bytes >= self.wake_at_bytes
                    or self.ready_events >= self.wake_at_events
                ):
                    self.cond.notify_all()  # a batch is due now: every idle sender
                elif new_head:
                    self.cond.notify()  # one sender learns the due time (Batcher.next_batch)
            for commit in puts:
                commit._event.set()
            self._changed()

    def _pause(self, until: float) -> None:
        """Wait before a write is tried again; a close() whose deadline comes first cuts
        the wait short (new puts do not: the retry keeps its pace)."""
        with self._wcond:
            while True:
                end = min(until, self._close_deadline) if self._closing else until
                left = end - time.monotonic()
                if left <= 0:
                    return
                self._wcond.wait(left)

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
            self.head_seen = time.monotonic()
        return self._head_ts

    def take(self, max_bytes: int, max_events: int) -> list[StoredChunk]:
        """The oldest ready chunks, up to the limits (at least one if any is ready).

        ``max_bytes`` bounds the chunks' bodies with one newline each, as they are joined
        in a request body.
        """
        with self.cond:
            heads = self._q.heads(self._cursor, HEAD_ROWS)
            chosen: list[tuple[int, int, int, float]] = []
            nbytes = nevents = cost = 0
            for head in heads:
                if chosen and (cost + head[2] + 1 > max_bytes or nevents + head[1] > max_events):
                    break
                chosen.append(head)
                nbytes += head[2]
                nevents += head[1]
                cost += head[2] + 1
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

    def find_ready(self, patterns: list[bytes]) -> list[StoredChunk]:
        """Chunks not handed to a sender yet whose body holds any of ``patterns``."""
        if not patterns:
            return []
        with self.cond:
            cursor = self._cursor
        rows = self._q.containing(cursor, patterns)
        return [StoredChunk(r[0], r[1], bytes(r[2]), r[3]) for r in rows]

    def ack(self, chunks: list[StoredChunk]) -> None:
        """The server has these chunks (or they were dropped): the writer deletes them.

        Counted at once; the delete is committed with the next group (should the process
        die first, the chunks are sent again: a duplicate, never a loss).
        """
        with self.cond:
            live = [c for c in chunks if c.id not in self._voided]
            self._voided.difference_update(c.id for c in chunks)
            for c in live:
                self._inflight.pop(c.id, None)
            events = sum(c.events for c in live)
            nbytes = sum(len(c.body) for c in live)
            self.rows -= len(live)
            self.events -= events
            self.bytes -= nbytes
            self.inflight_events -= events
            self.inflight_bytes -= nbytes
            self.cond.notify_all()
        if live:
            with self._wcond:
                self._acks.extend(c.id for c in live)
                self._wcond.notify()
            self._changed()

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
                "uncommitted_bytes": self._reserved,
                "commits": self.commits,
                "write_errors": self.write_errors,
                # the store's own: a sender's last_error (503, timeouts) must not hide it
                "write_error": self.last_error,
                "write_error_at": self.last_error_at,
                "write_failing": self.failing,
            }
        age = self.oldest_age()
        out["oldest_age"] = round(age, 3) if age is not None else None
        return out

    def close(self, deadline: float | None = None) -> bool:
        """Commit what is pending, stop the writer, close the file; False if not all done."""
        with self._wcond:
            self._closing = True
            self._close_deadline = deadline if deadline is not None else time.monotonic() + 10
            self._wcond.notify()
        self._writer.join(max(0.0, self._close_deadline - time.monotonic()) + 1.0)
        if self._writer.is_alive():
            return False
        self._q.close()
        return True
