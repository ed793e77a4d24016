"""The forwarder's parts on their own: store, chunker, renderer, batcher, back-off."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from bus.envelope import Event
from bus.errors import InvalidEvent
from comms.ndjson import event_spans, join_body, render_event
from forwarder.backoff import Backoff, parse_retry_after
from forwarder.batcher import Batch, Batcher, Piece, pieces_of_events, split
from forwarder.chunker import Chunk, Chunker
from forwarder.render import Renderer
from forwarder.store import Store


def chunk(*seqs: int) -> Chunk:
    lines = [b'{"module":"m","collector":"c"}\n' + orjson.dumps({"seq": s}) for s in seqs]
    return Chunk(body=b"\n".join(lines), events=len(seqs), ts=1000.0 + seqs[0])


def body_seqs(body: bytes) -> list[int]:
    return [orjson.loads(line)["seq"] for line in body.split(b"\n") if b"seq" in line]


# -- store -------------------------------------------------------------------------------


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


# -- chunker -----------------------------------------------------------------------------


def test_chunker_closes_on_bytes_and_on_time() -> None:
    now = [0.0]
    chunker = Chunker(100, 0.005, clock=lambda: now[0], wall=lambda: 42.0)
    assert chunker.take() is None and chunker.deadline() is None
    chunker.add(b"x" * 40)
    assert not chunker.due() and chunker.deadline() == 0.005
    now[0] = 0.006
    assert chunker.due()
    chunker.add(b"y" * 70)
    assert chunker.full()
    taken = chunker.take()
    assert taken == Chunk(body=b"x" * 40 + b"\n" + b"y" * 70, events=2, ts=42.0)


# -- renderer ----------------------------------------------------------------------------

CASES: list[Any] = [
    {"module": "m", "collector": "c", "data": {"a": [1, 2.5, None, True, "é"]}},
    {"module": "m", "collector": "c", "data": {}, "type": "stateless", "ts": 12},
    {"module": "m", "collector": "c", "data": {"nl": "line\nbreak"}, "extra": 1},
    {"module": "fim", "collector": "file", "type": "stateful", "id": "d", "operation": "delete"},
    {"module": "command", "type": "stateful", "id": "d", "operation": "update",
     "data": {"command": {"result": {"code": 0, "message": "done"}}}},
    {"module": "inventory", "collector": "packages", "type": "stateful", "id": "x",
     "operation": "create", "data": {"package": {"name": "bash", "size": 1}}},
]  # fmt: skip
BAD: list[tuple[Any, str]] = [
    ([1], "not_map"),
    ({"module": "m", "collector": "c"}, "missing_field"),
    ({"module": "", "collector": "c", "data": {}}, "bad_value"),
    ({"module": "m", "collector": "c", "data": {"b": b"x"}}, "not_json"),
    ({"module": "m", "collector": "c", "data": {1: 2}}, "not_json"),
    ({"module": "inventory", "collector": "nope", "type": "stateful", "id": "x",
      "operation": "create", "data": {}}, "bad_value"),
    ({"module": "m", "collector": "c", "data": {"module": "x", "collector": "y"}}, "bad_value"),
    ({"module": "inventory", "collector": "packages", "type": "stateful", "id": "x",
      "operation": "create", "data": {"p": 1}}, "bad_value"),
    ({"module": "fim", "collector": "file", "type": "stateful", "id": "x",
      "operation": "update", "data": {}}, "bad_value"),
]  # fmt: skip


@pytest.mark.parametrize("raw", CASES)
def test_renderer_matches_the_envelope_and_protocol(raw: dict[str, Any]) -> None:
    stateful, lines = Renderer().render(raw)
    event = Event.from_wire(raw)
    assert stateful == event.stateful
    assert lines == render_event(event)
    assert b"\n" not in lines.split(b"\n", 1)[-1] or event.data is None
    assert orjson.loads(lines.split(b"\n")[0]) == event.header()


@pytest.mark.parametrize(("raw", "reason"), BAD)
def test_renderer_rejects_with_the_reason(raw: Any, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        Renderer().render(raw)
    assert info.value.reason == reason


def test_event_spans_and_join_body() -> None:
    head = b'{"id":"d","module":"fim","collector":"file","operation":"delete"}'
    upd = b'{"id":"d","module":"fim","collector":"file","operation":"update"}\n{"x":1}'
    assert event_spans(upd + b"\n" + head + b"\n" + upd, True) == [upd, head, upd]
    assert join_body(b"{agent}", [b"a\nb", b"c\nd"]) == b"{agent}\na\nb\nc\nd"


# -- batcher and splitting -----------------------------------------------------------------


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


# -- back-off ----------------------------------------------------------------------------


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
