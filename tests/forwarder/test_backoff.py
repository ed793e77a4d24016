"""forwarder.backoff: the shared back-off of one queue's senders, and Retry-After."""

from __future__ import annotations

import threading

from forwarder.backoff import Backoff, parse_retry_after


def test_backoff_full_jitter_doubles_to_the_cap_and_honours_retry_after() -> None:
    now = [0.0]
    backoff = Backoff(1.0, 8.0, clock=lambda: now[0], rng=lambda: 1.0)
    stop = threading.Event()
    delays = []
    for _ in range(5):
        ticket = backoff.acquire(stop)
        assert ticket is not None
        delays.append(backoff.failure(ticket))
        now[0] += delays[-1]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    ticket = backoff.acquire(stop)
    assert ticket is not None
    assert backoff.failure(ticket, retry_after=30.0) == 30.0
    now[0] += 30.0
    ticket = backoff.acquire(stop)
    assert ticket is not None
    backoff.success(ticket)
    assert backoff.remaining() == 0.0 and backoff.attempts == 0


def test_backoff_lets_one_probe_through_at_a_time() -> None:
    now = [0.0]
    backoff = Backoff(1.0, 1.0, clock=lambda: now[0], rng=lambda: 0.5)
    stop = threading.Event()
    first = backoff.acquire(stop)
    assert first is not None
    backoff.failure(first)
    now[0] = 1.0
    probe = backoff.acquire(stop)
    assert probe is not None
    stop.set()  # a second caller now waits: it gets nothing while the probe is out
    assert backoff.acquire(stop) is None


def test_parse_retry_after() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 60) == 60.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
