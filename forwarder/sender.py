"""Senders: threads that POST batches of one queue and act on every answer.

Stateless: several threads, so several requests are in flight on the keep-alive
connections of the shared session. Stateful: one thread, one request in flight, so the
updates of a document arrive in the order they were made (a split batch is sent half by
half, in order).

Stateful requests are kept under ``stateful_batch_max_bytes`` (body bytes, agent line
included; see :func:`forwarder.batcher.pack`): the 6.0 server parses each received piece
of a request on its own (docs/protocol.md, "Events").

What each answer does (docs/forwarder.md, "How it works"):

- 2xx: the batch's chunks are acked (deleted from the queue). For stateful, the items of
  the 200 follow the indexer's semantics (:meth:`Sender._check_items`): a 409 to a
  ``create`` and a 404 to a ``delete`` mean the server already has that state
  (delivered); a 404 to an ``update`` is sent again as a ``create`` of the same document
  before the next batch; any other item with a status ≥ 400 is quarantined.
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

from bus.errors import AgentbusError
from bus.indices import index_name
from bus.threads import start_thread
from comms.errors import ServerRejected, ServerUnreachable
from comms.ndjson import NEWLINE, event_spans
from core.logs import RateLimitedLog
from forwarder.backoff import Backoff
from forwarder.batcher import Batch, Batcher, Piece, pack, pieces_of_events, split
from forwarder.quarantine import Quarantine
from forwarder.store import Store

#: statuses that mean "this content is refused": split, bisect, quarantine
SPLIT_STATUSES = (400, 413)
#: bytes assumed for the agent line while it cannot be read (not enrolled yet)
AGENT_LINE_RESERVE = 1024

#: a document: (index, id)
DocKey = tuple[str, str]


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
        max_body: int | None = None,
        on_fatal: Callable[[ServerRejected], None] | None = None,
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
        #: hard bound of a request body (stateful); None: the batcher's bound is enough
        self.max_body = max_body
        self.stop_event = threading.Event()
        #: the server's final refusal of our credentials; the service stops on it
        self.fatal: ServerRejected | None = None
        #: told of that refusal (the forwarder's Service.fail)
        self._on_fatal = on_fatal
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._log = RateLimitedLog(6)
        # figures
        self.sent = 0  # events in requests posted (every attempt)
        self.acked = 0  # events the server accepted
        self.retried = 0  # requests that failed and will be sent again
        self.quarantined = 0  # events moved to the quarantine
        self.splits = 0  # batches split after a 400/413
        self.item_failures = 0  # stateful items refused inside a 200 (quarantined)
        self.items_already_created = 0  # create → 409: the document was there (delivered)
        self.items_already_deleted = 0  # delete → 404: the document was gone (delivered)
        self.items_recreated = 0  # update → 404, sent again as a create
        self.items_recreate_moot = 0  # ... not sent: a later event of that document decides
        self.stateful_oversized = 0  # single events over max_body, sent alone
        self.in_flight = 0  # requests being sent right now
        self.requests: dict[str, int] = {}  # by status; "error" for no answer
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_success_at: float | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.workers):
            t = start_thread(self._work, f"send-{self.kind}-{i}")
            self._threads.append(t)

    def request_stop(self) -> None:
        self.stop_event.set()
        # the threads wait on conditions with no timeout (or the real deadline): wake them
        self.batcher.wake()
        self.backoff.wake()

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
                batch = self.batcher.next_batch(self.stop_event, max_bytes=self._room())
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

    def _room(self) -> int | None:
        """Bytes of chunk lines that fit one request with the agent line (stateful)."""
        if self.max_body is None:
            return None
        try:
            overhead = len(self._agent_line()) + 1
        except Exception:  # not enrolled yet: the sender backs off on it anyway
            overhead = AGENT_LINE_RESERVE
        return max(1, self.max_body - overhead)

    def _requests(self, pieces: list[Piece]) -> list[list[Piece]]:
        """The requests that carry ``pieces``, in order, each within ``max_body``."""
        room = self._room()
        if room is None:
            return [pieces]
        requests, oversized = pack(pieces, room, self.stateful)
        if oversized:
            with self._lock:
                self.stateful_oversized += oversized
            logger.warning(
                "{} {} event(s) larger than {} bytes with the agent line: each goes alone "
                "(the server may cut such a request)",
                oversized,
                self.kind,
                self.max_body,
            )
        return requests

    def deliver(self, batch: Batch) -> bool:
        """Send every event of ``batch`` (or quarantine it); False when stopped first.

        For stateful, updates answered 404 are sent again as creates here, after the
        batch's own requests and before the batch is acked (so before the next batch):
        a crash in between sends the whole batch again, never loses the re-creation.
        """
        missing: dict[DocKey, Piece] = {}
        if not self._send(self._requests(batch.pieces), missing):
            return False
        creates = self._recreations(missing)
        if creates:
            with self._lock:
                self.items_recreated += len(creates)
            if not self._send(self._requests(creates), missing):
                return False
        return True

    def _send(self, requests: list[list[Piece]], missing: dict[DocKey, Piece]) -> bool:
        """Send these requests in order, splitting on 400/413; False when stopped."""
        todo: deque[list[Piece]] = deque(requests)
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
                    self._check_items(pieces, reply, missing)
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
                if self._on_fatal is not None:
                    self._on_fatal(exc)
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

    def _check_items(
        self, pieces: list[Piece], reply: ReplyLike, missing: dict[DocKey, Piece]
    ) -> None:
        """Act on the per-item results of a stateful 200 (the indexer's semantics).

        - create → 409, delete → 404: the server already has that state; counted as
          delivered (``items_already_created``, ``items_already_deleted``).
        - update → 404: the server lost the document; the update (our collectors send
          whole documents) is kept in ``missing`` to be sent again as a create, unless a
          later event of that document, answered in this batch, settles it first.
        - a command result answered 404 (the server owns those documents), and every
          other failure: quarantined with the item's error.
        """
        try:
            results = orjson.loads(reply.body)["results"]
            if not isinstance(results, list):
                raise TypeError("results is not a list")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            self._error(f"stateful answer without usable per-item results: {exc}")
            return
        statuses: list[int] = []
        failed = False
        for item in results:
            try:
                status = int(item.get("status", 200))
            except (AttributeError, TypeError, ValueError):
                status = 200
            statuses.append(status)
            failed = failed or status >= 400
        if not failed and not missing:
            return  # the common case: nothing to look at per event
        events = pieces_of_events(pieces, True)
        if len(events) != len(results):
            self._error(f"the server answered {len(results)} items for {len(events)} events")
        for event, status, item in zip(events, statuses, results, strict=False):
            head = _header(event.body)
            key = _doc_key(head)
            if status < 400:
                if key is not None and missing.pop(key, None) is not None:
                    self._count_item("items_recreate_moot")
                continue
            operation = head.get("operation") if head else None
            command = head is not None and head.get("module") == "command"
            if status == 409 and operation == "create":
                self._count_item("items_already_created")
                if key is not None and missing.pop(key, None) is not None:
                    self._count_item("items_recreate_moot")
                continue
            if status == 404 and operation == "delete" and not command:
                self._count_item("items_already_deleted")
                if key is not None and missing.pop(key, None) is not None:
                    self._count_item("items_recreate_moot")
                continue
            if status == 404 and operation == "update" and not command and key is not None:
                if missing.pop(key, None) is not None:
                    self._count_item("items_recreate_moot")
                missing[key] = Piece(event.chunk, 1, _as_create(event.body))
                continue
            message = _item_message(item)
            if command and status == 404:
                message = (
                    f"{message} (the server has no command {head.get('id') if head else ''!r}:"
                    " its result cannot be recorded)"
                )
            with self._lock:
                self.item_failures += 1
            self._quarantine([event], status, f"item refused: {message}")

    def _recreations(self, missing: dict[DocKey, Piece]) -> list[Piece]:
        """The creates to send for updates answered 404, minus those a ``delete`` or a
        ``create`` of the same document still in the queue makes moot."""
        if not missing:
            return []
        patterns = [b'{"id":' + orjson.dumps(doc_id) + b"," for _index, doc_id in missing]
        try:
            later = self.store.find_ready(patterns)
        except Exception as exc:  # cannot look: re-create (a later delete still removes it)
            self._error(f"cannot look for later deletes in the {self.kind} queue: {exc}")
            later = []
        for chunk in later:
            for span in event_spans(chunk.body, True):
                head = _header(span)
                key = _doc_key(head)
                # A later delete removes the document anyway; a later create makes it (and
                # must not meet our older copy: it would get 409 and leave the old data).
                if head and head.get("operation") in ("delete", "create") and key in missing:
                    del missing[key]
                    self._count_item("items_recreate_moot")
        creates = list(missing.values())
        missing.clear()
        return creates

    def _count_item(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def figures(self) -> dict[str, Any]:
        with self._lock:
            return {
                "sent": self.sent,
                "acked": self.acked,
                "retried": self.retried,
                "quarantined": self.quarantined,
                "splits": self.splits,
                "item_failures": self.item_failures,
                **(
                    {
                        "items_already_created": self.items_already_created,
                        "items_already_deleted": self.items_already_deleted,
                        "items_recreated": self.items_recreated,
                        "items_recreate_moot": self.items_recreate_moot,
                        "stateful_oversized": self.stateful_oversized,
                    }
                    if self.stateful
                    else {}
                ),
                "in_flight": self.in_flight,
                "requests": dict(self.requests),
                "backoff": round(self.backoff.remaining(), 3),
                "backoff_attempts": self.backoff.attempts,
                "last_error": self.last_error,
                "last_error_at": self.last_error_at,
                "last_success_at": self.last_success_at,
            }


def _header(event: bytes) -> dict[str, Any] | None:
    """The header of one rendered stateful event (None if it cannot be read)."""
    try:
        head = orjson.loads(event.split(NEWLINE, 1)[0])
    except orjson.JSONDecodeError:
        return None
    return head if isinstance(head, dict) else None


def _doc_key(head: dict[str, Any] | None) -> DocKey | None:
    """The document an event is about: (index, id)."""
    if head is None or not isinstance(head.get("id"), str):
        return None
    module, collector = head.get("module"), head.get("collector")
    if not isinstance(module, str):
        return None
    return index_name(module, collector if isinstance(collector, str) else None), head["id"]


def _as_create(event: bytes) -> bytes:
    """The same event with operation ``create`` (the header's key order is kept)."""
    head_line, _, data_line = event.partition(NEWLINE)
    head = orjson.loads(head_line)
    head["operation"] = "create"
    return orjson.dumps(head) + NEWLINE + data_line


def _item_message(item: Any) -> str:
    if not isinstance(item, dict):
        return ""
    return str(item.get("error") or item.get("reason") or item.get("result") or "")
