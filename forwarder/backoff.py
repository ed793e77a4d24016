"""Back-off after failed requests: who may send while a queue's server calls fail.

One :class:`Backoff` per queue is shared by that queue's sender threads. While the server
is healthy every thread sends freely (several requests in flight). After a failure the
queue enters back-off: nobody sends until the delay has passed, then exactly one request
goes as a probe; its success reopens the gates, its failure doubles the ceiling of the
next delay. So during an outage the number of requests is bounded by the back-off
schedule, not by the number of threads.

The delay itself is :func:`core.backoff.compute_backoff` with full jitter (drawn
uniformly between 0 and the ceiling, which keeps many agents that lost the same server from
coming back in step; the single probe bounds the rate however short a delay is drawn) and
the server's Retry-After as a floor.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable

from core.backoff import compute_backoff

#: longest Retry-After we obey (a broken server must not park us for days)
MAX_RETRY_AFTER = 3600.0


class Backoff:
    """Shared failure state of one queue's senders."""

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] | None = None,
    ) -> None:
        self.initial = max(initial, 0.001)
        self.maximum = max(maximum, self.initial)
        self._clock = clock
        self._rng = rng
        self._cond = threading.Condition()
        self.attempts = 0  # failures in a row
        self.delay = 0.0  # the delay drawn after the last failure
        self._until = 0.0
        self._probing = False
        self._generation = 0

    @property
    def active(self) -> bool:
        return self.attempts > 0

    def acquire(self, stop: threading.Event) -> int | None:
        """Wait for permission to send; returns a ticket for :meth:`success`/:meth:`failure`.

        Returns None when ``stop`` is set while waiting; whoever sets it calls :meth:`wake`
        (the sender's ``request_stop`` does), so a waiting thread sees it at once.
        """
        with self._cond:
            while not stop.is_set():
                if self._may_send():
                    if self.attempts:
                        self._probing = True
                    return self._generation
                self._wait()
            return None

    def wait_ready(self, stop: threading.Event) -> bool:
        """Wait, without taking a turn, until a request could go; False if stopped.

        Senders call this before they take a batch from the queue, so that during an
        outage only the probe holds a batch and the rest stays in the queue (where
        ``drop_oldest`` can still drop it).
        """
        with self._cond:
            while not stop.is_set():
                if self._may_send():
                    return True
                self._wait()
            return False

    def wake(self) -> None:
        """Wake every waiting thread so it looks at its stop flag (call after setting it)."""
        with self._cond:
            self._cond.notify_all()

    def _may_send(self) -> bool:
        return self.attempts == 0 or (self._clock() >= self._until and not self._probing)

    def _wait(self) -> None:
        """Sleep until the back-off ends, or, while the probe is out, until its outcome
        (:meth:`success`, :meth:`failure` and :meth:`release` notify): no polling."""
        now = self._clock()
        self._cond.wait(self._until - now if now < self._until else None)

    def success(self, ticket: int) -> None:
        with self._cond:
            if self.attempts:
                self._generation += 1
            self.attempts = 0
            self.delay = 0.0
            self._until = 0.0
            self._probing = False
            self._cond.notify_all()

    def failure(self, ticket: int, retry_after: float | None = None) -> float:
        """Record a failed request; returns the delay before the next one."""
        with self._cond:
            if ticket != self._generation:
                # a request that left before the failure already counted: no extra doubling
                return max(0.0, self._until - self._clock())
            self._probing = False
            self._generation += 1
            self.attempts += 1
            delay = compute_backoff(
                self.attempts,
                initial=self.initial,
                maximum=self.maximum,
                jitter="full",
                retry_after=retry_after,
                max_retry_after=MAX_RETRY_AFTER,
                rng=self._rng,
            )
            self.delay = delay
            self._until = self._clock() + delay
            self._cond.notify_all()
            return delay

    def release(self, ticket: int) -> None:
        """Give back a turn without an outcome (the thread is stopping)."""
        with self._cond:
            if ticket == self._generation:
                self._probing = False
            self._cond.notify_all()

    def remaining(self) -> float:
        """Seconds until the next request may go (0 when not backing off)."""
        with self._cond:
            return max(0.0, self._until - self._clock()) if self.attempts else 0.0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds < 0:  # NaN or in the past
        return 0.0 if seconds < 0 else None
    return seconds
