"""forwarder.chunker: events that arrive together become one queue row."""

from __future__ import annotations

from forwarder.chunker import Chunk, Chunker


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


def test_chunker_closes_before_an_event_would_overflow_it() -> None:
    chunker = Chunker(100, 1.0)
    assert not chunker.overflows(500)  # an empty chunk takes any event
    chunker.add(b"x" * 60)
    assert not chunker.overflows(38) and chunker.overflows(39)
