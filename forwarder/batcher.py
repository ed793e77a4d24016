"""Batches: stored chunks gathered into one request body, and split again when needed.

A batch closes on bytes (``batch_max_bytes``), on events (``batch_max_events``) or on
time: it is taken as soon as enough is ready to fill it, or when the oldest ready event
has waited ``batch_interval`` — whichever comes first; a full batch never waits for a
timer. Its body is a concatenation of stored chunks (they are already NDJSON lines).

When the server refuses a batch as a whole (413 too large, 400 bad content) the sender
splits it: first between chunks, then, for a single chunk, between its events, down to
one event.

Stateful requests have a hard size bound (``stateful_batch_max_bytes``, docs/protocol.md:
the 6.0 server parses each received piece of a request on its own, so a body must fit
one 16 KiB TLS record with its headers). :func:`pack` cuts a batch into requests that
fit, between chunks and, for a chunk too big on its own, between its events; a single
event bigger than the bound goes alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from comms.ndjson import NEWLINE, event_spans
from forwarder.store import Store, StoredChunk


@dataclass(frozen=True, slots=True)
class Piece:
    """A run of rendered events from one stored chunk (the whole chunk, or part of it)."""

    chunk: int
    events: int
    body: bytes


@dataclass(slots=True)
class Batch:
    """Pieces sent in one request, and the stored chunks to ack once all are delivered."""

    pieces: list[Piece]
    chunks: list[StoredChunk] = field(default_factory=list)

    @classmethod
    def of(cls, chunks: list[StoredChunk]) -> Batch:
        return cls([Piece(c.id, c.events, c.body) for c in chunks], chunks)

    @property
    def events(self) -> int:
        return sum(p.events for p in self.pieces)

    @property
    def nbytes(self) -> int:
        return sum(len(p.body) + 1 for p in self.pieces)

    def body(self, agent_line: bytes) -> bytes:
        """The request body (docs/protocol.md, "Events"): agent line, then every piece's
        lines."""
        return NEWLINE.join([agent_line, *(p.body for p in self.pieces)])


def split(pieces: list[Piece], stateful: bool) -> tuple[list[Piece], list[Piece]] | None:
    """Two halves, in order, of a list of pieces; None when it is a single event."""
    if len(pieces) > 1:
        total = sum(len(p.body) for p in pieces)
        acc = 0
        for i, p in enumerate(pieces[:-1]):
            acc += len(p.body)
            if acc * 2 >= total:
                return pieces[: i + 1], pieces[i + 1 :]
        return pieces[:-1], pieces[-1:]
    if not pieces or pieces[0].events <= 1:
        return None
    only = pieces[0]
    spans = event_spans(only.body, stateful)
    half = len(spans) // 2
    left = Piece(only.chunk, half, NEWLINE.join(spans[:half]))
    right = Piece(only.chunk, len(spans) - half, NEWLINE.join(spans[half:]))
    return [left], [right]


def pieces_of_events(pieces: list[Piece], stateful: bool) -> list[Piece]:
    """The same events, one piece per event (for per-item results)."""
    out: list[Piece] = []
    for p in pieces:
        if p.events == 1:
            out.append(p)
        else:
            out.extend(Piece(p.chunk, 1, span) for span in event_spans(p.body, stateful))
    return out


def pack(pieces: list[Piece], budget: int, stateful: bool) -> tuple[list[list[Piece]], int]:
    """Cut ``pieces`` into requests, in order, whose lines (each with its newline) fit
    ``budget`` bytes; returns the requests and how many lone events are over ``budget``.

    A piece that fits a request stays whole; one that does not is cut into its events.
    """
    units: list[Piece] = []
    for p in pieces:
        if len(p.body) + 1 <= budget or p.events <= 1:
            units.append(p)
        else:
            units.extend(Piece(p.chunk, 1, span) for span in event_spans(p.body, stateful))
    requests: list[list[Piece]] = []
    current: list[Piece] = []
    used = oversized = 0
    for unit in units:
        cost = len(unit.body) + 1
        if current and used + cost > budget:
            requests.append(current)
            current, used = [], 0
        current.append(unit)
        used += cost
        if cost > budget:  # one event over the bound: a request of its own
            oversized += 1
            requests.append(current)
            current, used = [], 0
    if current:
        requests.append(current)
    return requests, oversized


class Batcher:
    """Hands out batches from one store according to the closing rules."""

    def __init__(
        self,
        store: Store,
        *,
        max_bytes: int,
        max_events: int,
        interval: float,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.max_events = max(1, max_events)
        self.interval = interval
        self._wall = wall
        self._clock = clock

    def due_in(self, max_bytes: int | None = None) -> float | None:
        """Seconds until a batch may be taken: 0 now, None when nothing is ready.

        ``max_bytes`` overrides the byte bound (the sender's room for chunks in one
        request). Call with ``store.cond`` held.
        """
        store = self.store
        if store.ready_events <= 0:
            return None
        limit = self.max_bytes if max_bytes is None else max_bytes
        if store.ready_bytes >= limit or store.ready_events >= self.max_events:
            return 0.0
        head = store.head_ts()
        if head is None:
            return None
        # Arrival times are wall-clock (they survive restarts); the monotonic bound keeps a
        # clock stepped backwards from holding a batch longer than one interval.
        by_wall = head + self.interval - self._wall()
        by_clock = store.head_seen + self.interval - self._clock()
        return max(0.0, min(by_wall, by_clock))

    def next_batch(
        self,
        stop: threading.Event,
        *,
        poll: float | None = None,
        max_bytes: int | None = None,
    ) -> Batch | None:
        """Block until a batch is due and take it; None when ``stop`` is set first.

        The wait lasts until the batch is due (``batch_interval`` after its oldest event)
        or until the store's condition is notified: a commit that makes it due sooner
        (a new oldest event, or a batch's worth of bytes or events), an ack, or :meth:`wake`,
        which whoever sets ``stop`` calls. ``poll`` caps each wait (None: no cap).
        ``max_bytes`` overrides the byte bound for this batch.
        """
        store = self.store
        limit = self.max_bytes if max_bytes is None else max_bytes
        with store.cond:
            # stop is looked at with the condition held: a wake() cannot slip in between
            while not stop.is_set():
                wait = self.due_in(limit)
                if wait == 0.0:
                    chunks = store.take(limit, self.max_events)
                    if chunks:
                        if store.ready_events > 0:
                            store.cond.notify()  # the rest has a new head: pass it on
                        return Batch.of(chunks)
                    wait = None  # no row after all: wait for the next commit or ack
                if poll is not None:
                    wait = poll if wait is None else min(wait, poll)
                # A commit wakes us early only if it makes the batch due sooner (Store).
                store.wake_at_bytes = limit
                store.wake_at_events = self.max_events
                store.cond.wait(wait)
        return None

    def wake(self) -> None:
        """Wake the threads waiting in :meth:`next_batch` so they look at their stop flag."""
        with self.store.cond:
            self.store.cond.notify_all()
