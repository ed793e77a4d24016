"""Senders: threads that POST batches of one queue and act on every answer.

Stateless: several threads, so several requests are in flight on the keep-alive
connections of the shared session. Stateful: one thread, one request in flight, so the
updates of a document arrive in the order they were made (a split batch is sent half by
half, in order).

What each answer does (DESIGN.md, forwarder semantics):

- 2xx: the batch's chunks are acked (deleted from the queue). For stateful, items with a
  status ≥ 400 inside the 200 are quarantined with the item's error.
- 401/403: the server client renews the token and resends once by itself; if that still
  fails, back off like below.
- 408, 429, 5xx, other statuses, network errors, no credentials yet: keep the batch, back
  off (full jitter, Retry-After honoured, see :mod:`forwarder.backoff`) and send it again;
  there is no retry limit, the data is on disk.
- 413: split the batch in two and send each half (between chunks first, then between the
  events of a chunk); a single event that is still too large is quarantined.
- 400: bisect the same way down to the offending event(s), quarantine them with the
  server's message, deliver the rest.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import orjson
from loguru import logger

from agent.logs import RateLimitedLog
from bus.errors import AgentbusError
from comms.errors import ServerRejected, ServerUnreachable
from comms.ndjson import NEWLINE
from forwarder.backoff import Backoff
from forwarder.batcher import Batch, Batcher, Piece, pieces_of_events, split
from forwarder.quarantine import Quarantine
from forwarder.store import Store

#: statuses that mean "this content is refused": split, bisect, quarantine
SPLIT_STATUSES = (400, 413)


class _Dropped(Exception):
    """Every chunk of the pieces being sent was dropped by drop_oldest meanwhile."""


class ReplyLike(Protocol):
    status: int
    body: bytes

    def message(self) -> str: ...

    def retry_after(self) -> float | None: ...


class Poster(Protocol):
    """What the sender needs from the server client (``comms.api.ServerClient``)."""

    def post_events(self, kind: Any, body: bytes, timeout: float | None = None) -> Any: ...


class Sender:
    """The sending threads of one queue."""

    def __init__(
        self,
        kind: str,
        *,
        store: Store,
        batcher: Batcher,
        backoff: Backoff,
        quarantine: Quarantine,
        client: Callable[[], Poster],
        agent_line: Callable[[], bytes],
        workers: int = 1,
    ) -> None:
        self.kind = kind
        self.stateful = kind == "stateful"
        self.store = store
        self.batcher = batcher
        self.backoff = backoff
        self.quarantine = quarantine
        self._client = client
        self._agent_line = agent_line
        self.workers = 1 if self.stateful else max(1, workers)
        self.stop_event = threading.Event()
        #: the server's final refusal of our credentials; the service stops on it
        self.fatal: ServerRejected | None = None
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._log = RateLimitedLog(6)
        # figures
        self.sent = 0  # events in requests posted (every attempt)
        self.acked = 0  # events the server accepted
        self.retried = 0  # requests that failed and will be sent again
        self.quarantined = 0  # events moved to the quarantine
        self.splits = 0  # batches split after a 400/413
        self.item_failures = 0  # stateful items refused inside a 200
        self.in_flight = 0  # requests being sent right now
        self.requests: dict[str, int] = {}  # by status; "error" for no answer
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_success_at: float | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.workers):
            t = threading.Thread(target=self._work, name=f"send-{self.kind}-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def request_stop(self) -> None:
        self.stop_event.set()

    def join(self, deadline: float) -> bool:
        """Wait for the threads until ``deadline`` (monotonic); True if all finished."""
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    # -- work ----------------------------------------------------------------------
    def _work(self) -> None:
        while not self.stop_event.is_set():
            if not self.backoff.wait_ready(self.stop_event):
                return
            try:
                batch = self.batcher.next_batch(self.stop_event)
            except Exception as exc:  # a queue read error: log, wait, go on
                self._error(f"cannot read the {self.kind} queue: {exc}")
                self.stop_event.wait(1.0)
                continue
            if batch is None:
                return
            while True:
                try:
                    delivered = self.deliver(batch)
                    break
                except Exception as exc:  # a bug or a broken quarantine file: retry later
                    logger.opt(exception=True).debug("delivering a batch failed")
                    self._error(f"delivering a {self.kind} batch failed: {exc}")
                    if self.stop_event.wait(1.0):
                        return
            if not delivered:
                return  # stopping: the chunks stay in the queue and are sent after a restart
            try:
                self.store.ack(batch.chunks)
            except Exception as exc:
                # Not acked: the chunks are sent again after a restart (a duplicate, no loss).
                self._error(f"cannot ack in the {self.kind} queue: {exc}")
            # do not keep the delivered batch alive while waiting for the next one (RSS)
            del batch

    def deliver(self, batch: Batch) -> bool:
        """Send every event of ``batch`` (or quarantine it); False when stopped first."""
        todo: deque[list[Piece]] = deque([batch.pieces])
        while todo:
            pieces = todo.popleft()
            try:
                answer = self._post(pieces)
            except _Dropped:
                continue
            if answer is None:
                return False
            reply, pieces = answer
            if 200 <= reply.status < 300:
                events = sum(p.events for p in pieces)
                with self._lock:
                    self.acked += events
                if self.stateful:
                    self._check_items(pieces, reply)
                continue
            halves = split(pieces, self.stateful)
            if halves is None:
                self._quarantine(pieces, reply.status, reply.message())
                continue
            with self._lock:
                self.splits += 1
            todo.extendleft([halves[1], halves[0]])  # left half first: order is kept
        return True

    def _post(self, pieces: list[Piece]) -> tuple[ReplyLike, list[Piece]] | None:
        """POST until the server gives a final answer (2xx, 400, 413); None if stopped.

        Returns the answer and the pieces it answers (those not dropped meanwhile).

        Raises :class:`_Dropped` when drop_oldest deleted every chunk of ``pieces``
        while they waited for a retry.
        """
        while True:
            ticket = self.backoff.acquire(self.stop_event)
            if ticket is None:
                return None
            live = [p for p in pieces if not self.store.voided(p.chunk)]
            if not live:
                self.backoff.release(ticket)
                raise _Dropped
            pieces = live
            events = sum(p.events for p in pieces)
            with self._lock:
                self.in_flight += 1
            try:
                body = NEWLINE.join([self._agent_line(), *(p.body for p in pieces)])
                with self._lock:
                    self.sent += events
                reply = self._client().post_events(self.kind, body)
            except ServerUnreachable as exc:
                self._failed(ticket, exc.retry_after, "error", f"server unreachable: {exc}")
                continue
            except ServerRejected as exc:  # invalid key, unknown agent: final, no retry mends it
                self.fatal = exc
                self._failed(ticket, None, "error", str(exc))
                continue
            except AgentbusError as exc:  # no credentials, a renewal that failed, bad answer
                self._failed(ticket, None, "error", str(exc))
                continue
            except Exception as exc:
                logger.opt(exception=True).debug("unexpected error while sending")
                self._failed(ticket, None, "error", f"{type(exc).__name__}: {exc}")
                continue
            finally:
                with self._lock:
                    self.in_flight -= 1
                # a 1 MB body must not stay alive through a back-off wait (RSS)
                body = b""
            status = int(reply.status)
            self._count(str(status))
            if 200 <= status < 300 or status in SPLIT_STATUSES:
                self.backoff.success(ticket)
                with self._lock:
                    self.last_success_at = time.time()
                return reply, pieces
            self._failed(
                ticket,
                reply.retry_after(),
                None,
                f"HTTP {status} from the server: {reply.message()}",
            )

    # -- outcomes ------------------------------------------------------------------
    def _failed(
        self, ticket: int, retry_after: float | None, count_as: str | None, message: str
    ) -> None:
        if count_as:
            self._count(count_as)
        delay = self.backoff.failure(ticket, retry_after)
        with self._lock:
            self.retried += 1
        self._error(f"{self.kind}: {message}; retrying in {delay:.1f}s")

    def _count(self, key: str) -> None:
        with self._lock:
            self.requests[key] = self.requests.get(key, 0) + 1

    def _error(self, message: str) -> None:
        with self._lock:
            self.last_error = message
            self.last_error_at = time.time()
        self._log.warning(f"send:{self.kind}", "{}", message)

    def _quarantine(self, pieces: list[Piece], status: int, message: str) -> None:
        bodies = [p.body for p in pieces]
        n = self.quarantine.add(self.kind, bodies, status, message)
        with self._lock:
            self.quarantined += n
        logger.error(
            "{} event quarantined: the server refused it with HTTP {}: {}",
            self.kind,
            status,
            message,
        )

    def _check_items(self, pieces: list[Piece], reply: ReplyLike) -> None:
        """Quarantine stateful items that failed on their own inside a 200."""
        try:
            results = orjson.loads(reply.body)["results"]
            if not isinstance(results, list):
                raise TypeError("results is not a list")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            self._error(f"stateful answer without usable per-item results: {exc}")
            return
        failed = []
        for index, item in enumerate(results):
            try:
                status = int(item.get("status", 200))
            except (AttributeError, TypeError, ValueError):
                continue
            if status >= 400:
                failed.append((index, status, item))
        if not failed:
            return
        events = pieces_of_events(pieces, True)
        if len(events) != len(results):
            self._error(f"the server answered {len(results)} items for {len(events)} events")
        for index, status, item in failed:
            if index >= len(events):
                continue
            message = item.get("error") or item.get("reason") or item.get("result") or ""
            with self._lock:
                self.item_failures += 1
            self._quarantine([events[index]], status, f"item refused: {message}")

    def figures(self) -> dict[str, Any]:
        with self._lock:
            return {
                "sent": self.sent,
                "acked": self.acked,
                "retried": self.retried,
                "quarantined": self.quarantined,
                "splits": self.splits,
                "item_failures": self.item_failures,
                "in_flight": self.in_flight,
                "requests": dict(self.requests),
                "backoff": round(self.backoff.remaining(), 3),
                "backoff_attempts": self.backoff.attempts,
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
                "last_success_at": self.last_success_at,
            }
