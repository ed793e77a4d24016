"""Chunks: events that arrive together become one queue row.

persist-queue commits (and fsyncs) one transaction per row, so a row per event would cap
the forwarder at a few thousand events per second. Instead the receiver gathers the
rendered events of one kind that arrive within ``chunk_max_delay`` (100 ms), up to
``chunk_max_bytes``, and stores them as one row: the NDJSON lines joined by ``\\n``, the
exact bytes that will later sit in a request body.

A chunk is at most ``max_bytes`` long when the receiver asks :meth:`Chunker.overflows`
before adding (the stateful queue does: a chunk must fit one request of
``stateful_batch_max_bytes``); a single event bigger than that is a chunk of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Chunk:
    """Rendered events of one kind, ready to be stored as one row."""

    #: NDJSON lines of the events, joined by ``\\n``, no trailing newline
    body: bytes
    #: how many events the body holds
    events: int
    #: wall-clock time the first event arrived (for "oldest event age")
    ts: float


class Chunker:
    """Collects rendered events of one kind until the chunk is full or due."""

    def __init__(
        self,
        max_bytes: int,
        max_delay: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_delay = max_delay
        self._clock = clock
        self._wall = wall
        self._parts: list[bytes] = []
        self._bytes = 0
        self._started = 0.0
        self._ts = 0.0

    def add(self, rendered: bytes) -> None:
        """Append one rendered event."""
        if not self._parts:
            self._started = self._clock()
            self._ts = self._wall()
        self._parts.append(rendered)
        # +1 for the newline that will join it to the next one
        self._bytes += len(rendered) + 1

    def extend(self, rendered: list[bytes], nbytes: int) -> None:
        """Append several rendered events whose lengths (+1 each) sum to ``nbytes``."""
        if not rendered:
            return
        if not self._parts:
            self._started = self._clock()
            self._ts = self._wall()
        self._parts.extend(rendered)
        self._bytes += nbytes

    def overflows(self, size: int) -> bool:
        """Whether adding a rendered event of ``size`` bytes would pass ``max_bytes``
        (never for an empty chunk: an event bigger than the limit is a chunk alone)."""
        return bool(self._parts) and self._bytes + size + 1 > self.max_bytes

    @property
    def events(self) -> int:
        return len(self._parts)

    @property
    def nbytes(self) -> int:
        """Bytes the chunk's body will have (about: one newline too many)."""
        return self._bytes

    def full(self) -> bool:
        return self._bytes >= self.max_bytes

    def deadline(self) -> float | None:
        """When the pending chunk must be stored (``clock`` time), None when empty."""
        return self._started + self.max_delay if self._parts else None

    def due(self, now: float | None = None) -> bool:
        if not self._parts:
            return False
        if self._bytes >= self.max_bytes:
            return True
        return (self._clock() if now is None else now) >= self._started + self.max_delay

    def take(self) -> Chunk | None:
        """The pending chunk (and start a new one), or None when nothing is pending."""
        if not self._parts:
            return None
        chunk = Chunk(body=b"\n".join(self._parts), events=len(self._parts), ts=self._ts)
        self._parts = []
        self._bytes = 0
        return chunk
