"""forwarder.backoff: the shared back-off of one queue's senders, and Retry-After."""

from __future__ import annotations

import threading
import time

import pytest

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


@pytest.mark.timeout(30)
def test_waiters_wake_at_the_end_of_the_delay_at_the_probes_outcome_and_on_stop() -> None:
    """No polling: the delay is one timed wait; behind the probe, waiters are notified."""
    backoff = Backoff(0.2, 0.2, rng=lambda: 1.0)
    stop = threading.Event()
    first = backoff.acquire(stop)
    assert first is not None
    backoff.failure(first)
    started = time.monotonic()
    probe = backoff.acquire(stop)  # waits out the delay
    assert probe is not None and time.monotonic() - started >= 0.15
    ready: list[bool] = []
    waiter = threading.Thread(target=lambda: ready.append(backoff.wait_ready(stop)))
    waiter.start()
    backoff.success(probe)
    waiter.join(10)
    assert ready == [True]

    long = Backoff(600.0, 600.0, rng=lambda: 1.0)
    second = long.acquire(stop)
    assert second is not None
    long.failure(second)  # the next request may go in ten minutes
    tickets: list[int | None] = []
    waiter = threading.Thread(target=lambda: tickets.append(long.acquire(stop)))
    waiter.start()
    stop.set()
    long.wake()
    waiter.join(10)
    assert not waiter.is_alive() and tickets == [None]
