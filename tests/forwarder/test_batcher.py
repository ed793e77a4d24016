"""forwarder.batcher: batches from stored chunks, split again (413/400), packed within the
stateful request bound."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from forwarder.batcher import Batch, Batcher, Piece, pack, pieces_of_events, split
from forwarder.store import Store
from tests.fixtures.common import wait_for
from tests.forwarder.helpers import body_seqs, chunk, inventory_package, rendered


def test_split_between_chunks_then_between_events_keeps_order() -> None:
    pieces = [Piece(1, 2, chunk(0, 1).body), Piece(2, 2, chunk(2, 3).body)]
    left, right = split(pieces, False)  # type: ignore[misc]
    assert [p.chunk for p in left] == [1] and [p.chunk for p in right] == [2]
    a, b = split(left, False)  # type: ignore[misc]
    assert body_seqs(a[0].body) == [0] and body_seqs(b[0].body) == [1]
    assert split(a, False) is None
    assert [body_seqs(p.body) for p in pieces_of_events(pieces, False)] == [[0], [1], [2], [3]]
    assert Batch(pieces).body(b"{}") == b"{}\n" + pieces[0].body + b"\n" + pieces[1].body


def test_batcher_waits_for_the_interval_unless_the_batch_is_full(tmp_path: Path) -> None:
    store = Store(tmp_path, "stateless", max_bytes=10**9)
    wall = [2000.0]
    size = len(chunk(1).body)
    # a batch's bytes count one newline per chunk, as they are joined in the body
    batcher = Batcher(
        store, max_bytes=3 * (size + 1), max_events=100, interval=1.0, wall=lambda: wall[0]
    )
    store.put(chunk(1))  # ts 1001: waited 999 s already
    with store.cond:
        assert batcher.due_in() == 0.0
    wall[0] = 1001.5
    with store.cond:
        assert batcher.due_in() == pytest.approx(0.5)
    wall[0] = 0.0  # the clock stepped back by half an hour: one interval at most
    with store.cond:
        assert 0.9 < batcher.due_in() <= 1.0  # type: ignore[operator]
    store.head_seen -= 1.0
    with store.cond:
        assert batcher.due_in() == 0.0
    for i in (2, 3):
        store.put(chunk(i))
    with store.cond:
        assert batcher.due_in() == 0.0  # full: no waiting for the timer
    batch = batcher.next_batch(threading.Event())
    assert batch is not None and batch.events == 3
    store.close()


def test_pack_cuts_requests_within_the_budget_in_order() -> None:
    events = [rendered(inventory_package(f"p{i}")) for i in range(30)]
    big = rendered(inventory_package("big", description="d" * 3000))
    body = b"\n".join(events[:20])
    pieces = [Piece(1, 20, body), Piece(2, 1, big), Piece(3, 10, b"\n".join(events[20:]))]
    requests, oversized = pack(pieces, 1000, True)
    assert oversized == 1
    flat = [p.body for request in requests for p in request]
    assert b"\n".join(flat) == b"\n".join([body, big, *events[20:]])  # same events, same order
    for request in requests:
        cost = sum(len(p.body) + 1 for p in request)
        assert cost <= 1000 or [p.body for p in request] == [big]
    assert [[p.body for p in r] for r in requests].count([big]) == 1
    # everything fits: one request, pieces untouched
    assert pack(pieces, 10**6, True) == ([pieces], 0)


@pytest.mark.timeout(30)
def test_next_batch_waits_with_no_timer_until_a_commit_or_a_wake(tmp_path: Path) -> None:
    """No poll: a commit hands the batch over at once, wake() ends the wait on stop."""
    store = Store(tmp_path, "stateless", max_bytes=10**9)
    batcher = Batcher(store, max_bytes=10**6, max_events=1, interval=3600.0)
    stop = threading.Event()
    got: list[Batch | None] = []
    taker = threading.Thread(target=lambda: got.append(batcher.next_batch(stop)))
    taker.start()
    try:
        store.put(chunk(1))  # full at one event: due now, not in an hour
        taker.join(10)
        assert not taker.is_alive() and got[0] is not None and got[0].events == 1
        taker = threading.Thread(target=lambda: got.append(batcher.next_batch(stop)))
        taker.start()
        stop.set()
        batcher.wake()
        taker.join(10)
        assert not taker.is_alive(), "wake() did not end the wait of a stopped taker"
        assert got[1] is None
    finally:
        stop.set()
        batcher.wake()
        taker.join(10)
        store.close()


@pytest.mark.timeout(30)
def test_commits_that_do_not_make_the_batch_due_sooner_wake_no_sender(tmp_path: Path) -> None:
    """A trickle of commits adds to a batch due at its oldest event's time anyway: waking
    the senders for each was most of their CPU at 1,000 events/s."""
    store = Store(tmp_path, "stateless", max_bytes=10**9)
    size = len(chunk(0).body) + 1
    # the wall clock of the events' arrival (helpers' chunks arrived at 1000 + seq)
    batcher = Batcher(
        store, max_bytes=20 * size, max_events=10**6, interval=30.0, wall=lambda: 1000.0
    )
    wakes = []
    real_wait = store.cond.wait

    def counting_wait(timeout=None):
        wakes.append(timeout)
        return real_wait(timeout)

    store.cond.wait = counting_wait  # type: ignore[method-assign]
    stop = threading.Event()
    taken: list[Batch | None] = []
    sender = threading.Thread(target=lambda: taken.append(batcher.next_batch(stop)), daemon=True)
    sender.start()
    wait_for(lambda: len(wakes) == 1)  # nothing ready: waits for a commit, no timer
    store.put(chunk(0))  # the first event: a new head, the batch's due time is set
    wait_for(lambda: len(wakes) == 2 and wakes[1] is not None)
    for i in range(1, 10):
        store.put(chunk(i))  # half a batch: due at the head's time, as before
    assert len(wakes) == 2
    for i in range(10, 30):
        store.put(chunk(i))  # past a batch's worth of bytes: due now
        if taken:
            break
    sender.join(10)
    assert taken and taken[0] is not None and 10 < taken[0].events < 30
    store.close()
