"""forwarder.store: the on-disk queue of one kind (put, take, ack, capacity, group commit).

What every SQLite store of the agent shares (fresh file, reopen, corrupt file, close) is in
tests/test_store_contract.py."""

from __future__ import annotations

from pathlib import Path

from forwarder.store import Store
from tests.forwarder.helpers import body_seqs, chunk


def test_store_put_take_ack_and_accounting(tmp_path: Path) -> None:
    store = Store(tmp_path, "stateless", max_bytes=10**9)
    for i in range(5):
        assert store.put(chunk(2 * i, 2 * i + 1))
    assert (store.rows, store.events) == (5, 10)
    taken = store.take(max_bytes=10**9, max_events=4)
    assert [c.events for c in taken] == [2, 2]
    assert body_seqs(b"\n".join(c.body for c in taken)) == [0, 1, 2, 3]
    assert store.ready_events == 6 and store.inflight_events == 4
    store.ack(taken)
    store.close()
    again = Store(tmp_path, "stateless", max_bytes=10**9)
    assert (again.rows, again.events) == (3, 6)
    rest = again.take(10**9, 10**9)
    assert body_seqs(b"\n".join(c.body for c in rest)) == [4, 5, 6, 7, 8, 9]
    again.close()


def test_store_resumes_chunks_taken_but_never_acked(tmp_path: Path) -> None:
    store = Store(tmp_path, "stateful", max_bytes=10**9)
    store.put(chunk(1))
    store.put(chunk(2))
    assert len(store.take(10**9, 10**9)) == 2  # in flight when the process "dies"
    store.close()
    again = Store(tmp_path, "stateful", max_bytes=10**9)
    assert [body_seqs(c.body) for c in again.take(10**9, 10**9)] == [[1], [2]]
    again.close()


def test_store_block_refuses_beyond_the_limit_and_takes_again_after_an_ack(
    tmp_path: Path,
) -> None:
    one = chunk(1)
    store = Store(tmp_path, "stateless", max_bytes=len(one.body) * 2)
    assert store.put(chunk(1)) and store.put(chunk(2))
    assert not store.has_room(len(one.body))
    assert store.put(chunk(3)) is False
    store.ack(store.take(len(one.body), 10))
    assert store.put(chunk(3))
    assert store.dropped_events == 0
    store.close()


def test_store_drop_oldest_drops_ready_chunks_first_then_in_flight_ones(
    tmp_path: Path,
) -> None:
    one = chunk(1)
    store = Store(tmp_path, "stateless", max_bytes=len(one.body) * 2, drop_oldest=True)
    store.put(chunk(1))
    store.put(chunk(2))
    first = store.take(len(one.body), 10)  # chunk 1 is being sent
    assert store.put(chunk(3))  # drops chunk 2, the oldest nobody is sending
    assert store.dropped_events == 1
    second = store.take(len(one.body), 10)  # chunk 3 is being sent too
    assert store.put(chunk(4))  # nothing ready: the oldest in flight (chunk 1) goes
    assert store.dropped_events == 2
    assert store.voided(first[0].id) and not store.voided(second[0].id)
    store.ack(first)  # acking a dropped chunk changes nothing
    store.ack(second)
    assert (store.rows, store.events) == (1, 1)
    assert [body_seqs(c.body) for c in store.take(10**9, 10**9)] == [[4]]
    store.close()


def test_store_group_commit_is_visible_in_order(tmp_path: Path) -> None:
    store = Store(tmp_path, "stateless", max_bytes=10**9)
    commits = [store.submit(chunk(i)) for i in range(50)]
    assert all(c is not None and c.wait(10) for c in commits)
    taken = store.take(10**9, 10**9)
    assert [body_seqs(c.body)[0] for c in taken] == list(range(50))
    assert store.commits == 50
    store.close()
