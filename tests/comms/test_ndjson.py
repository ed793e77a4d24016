"""comms.ndjson: rendered events cut back into events, and request bodies joined."""

from __future__ import annotations

from comms.ndjson import event_spans, join_body


def test_event_spans_and_join_body() -> None:
    head = b'{"id":"d","module":"fim","collector":"file","operation":"delete"}'
    upd = b'{"id":"d","module":"fim","collector":"file","operation":"update"}\n{"x":1}'
    assert event_spans(upd + b"\n" + head + b"\n" + upd, True) == [upd, head, upd]
    assert join_body(b"{agent}", [b"a\nb", b"c\nd"]) == b"{agent}\na\nb\nc\nd"
