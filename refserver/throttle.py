"""Failed credential checks limited per client address: a token bucket per (kind, address).

Each address may fail ``per_minute`` checks of one kind at once (the bucket's size), and gets
one more every ``60 / per_minute`` seconds. With the bucket empty, the next check of that
kind from that address is answered 429 with ``Retry-After`` **before** any work is done (no
PBKDF2 for a guessed key). Successes cost nothing: a fleet enrolling and authenticating
quickly from one address is never slowed down. Kinds: ``login`` (the management API's user
and password), ``agent key`` (``POST /api/v1/authentication``), ``admin`` (the admin token).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: default failures per minute and address, for each kind
DEFAULT_PER_MINUTE = 10
#: addresses remembered at most; full (idle) buckets are forgotten first
MAX_CLIENTS = 10_000


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class FailureThrottle:
    """Thread-safe: the admin API's checks run in worker threads, the others on the loop."""

    def __init__(
        self,
        per_minute: int = DEFAULT_PER_MINUTE,
        *,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self.max_clients = max_clients
        self._clock = clock
        self._rate = per_minute / 60.0  # failures given back per second
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def retry_after(self, kind: str, client: str) -> int | None:
        """Seconds ``client`` must wait before its next ``kind`` check; None: go ahead."""
        if self.per_minute <= 0:
            return None
        with self._lock:
            bucket = self._refilled((kind, client))
            if bucket is None or bucket.tokens >= 1.0:
                return None
            return max(1, math.ceil((1.0 - bucket.tokens) / self._rate))

    def failed(self, kind: str, client: str) -> None:
        """Record one failed check of ``kind`` from ``client``."""
        if self.per_minute <= 0:
            return
        with self._lock:
            key = (kind, client)
            bucket = self._refilled(key)
            if bucket is None:
                self._forget_some()
                bucket = self._buckets[key] = _Bucket(float(self.per_minute), self._clock())
            bucket.tokens = max(0.0, bucket.tokens - 1.0)

    def clients(self) -> int:
        return len(self._buckets)

    def _refilled(self, key: tuple[str, str]) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            now = self._clock()
            bucket.tokens = min(
                float(self.per_minute), bucket.tokens + (now - bucket.stamp) * self._rate
            )
            bucket.stamp = now
        return bucket

    def _forget_some(self) -> None:
        """Keep the table bounded: drop refilled buckets, then the oldest ones."""
        if len(self._buckets) < self.max_clients:
            return
        now = self._clock()
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.stamp) * self._rate >= self.per_minute:
                del self._buckets[key]
        while len(self._buckets) >= self.max_clients:
            del self._buckets[next(iter(self._buckets))]
