"""Envelope validation: every kind of bad input gets its own reason and a clear message."""

from __future__ import annotations

import msgpack
import pytest

from bus.envelope import REASONS, Event, decode_frame, encode_events
from bus.errors import InvalidEvent

GOOD = {"module": "myapp", "collector": "audit", "data": {"msg": "hi"}}
STATEFUL = {
    "module": "fim",
    "collector": "file",
    "type": "stateful",
    "id": "doc-1",
    "operation": "update",
    "data": {"path": "/etc/passwd"},
}


def reject(obj: object) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        Event.from_wire(obj)
    assert info.value.reason in REASONS
    return info.value


def test_good_stateless_event_defaults_to_stateless_and_keeps_data():
    ev = Event.from_wire({**GOOD, "unknown": 1, "ts": 1700000000})
    assert ev.type == "stateless"
    assert ev.data == {"msg": "hi"}
    assert ev.ts == 1700000000.0
    assert ev.header() == {"module": "myapp", "collector": "audit"}


def test_stateful_header_has_the_servers_key_order():
    ev = Event.from_wire(STATEFUL)
    assert list(ev.header()) == ["id", "module", "collector", "operation"]


def test_stateful_delete_carries_no_data():
    ev = Event.from_wire({**STATEFUL, "operation": "delete"})
    assert ev.data is None


def test_command_result_needs_no_collector():
    ev = Event.from_wire(
        {"module": "command", "type": "stateful", "id": "A8", "operation": "update", "data": {}}
    )
    assert ev.header() == {"id": "A8", "module": "command", "operation": "update"}


@pytest.mark.parametrize(
    ("obj", "reason", "words"),
    [
        ([1, 2], "not_map", "must be a map"),
        ({"collector": "c", "data": {}}, "missing_field", "module is required"),
        ({"module": "m", "data": {}}, "missing_field", "collector is required"),
        ({"module": "m", "collector": "c"}, "missing_field", "data is required"),
        ({"module": 5, "collector": "c", "data": {}}, "wrong_type", "module must be a string"),
        ({"module": "m", "collector": "c", "data": [1]}, "wrong_type", "data must be a map"),
        ({"module": "", "collector": "c", "data": {}}, "bad_value", "module must not be empty"),
        ({"module": "m" * 129, "collector": "c", "data": {}}, "bad_value", "longer than 128"),
        ({**GOOD, "type": "weird"}, "bad_value", "type"),
        ({**GOOD, "ts": "yesterday"}, "wrong_type", "ts must be a number"),
        ({**STATEFUL, "module": "logcollector"}, "bad_value", "stateful module"),
        (
            {**STATEFUL, "module": "inventory", "collector": "cpu"},
            "bad_value",
            "inventory collector",
        ),
        ({k: v for k, v in STATEFUL.items() if k != "id"}, "missing_field", "id is required"),
        ({k: v for k, v in STATEFUL.items() if k != "operation"}, "missing_field", "operation"),
        ({**STATEFUL, "operation": "upsert"}, "bad_value", "operation"),
    ],
)
def test_each_bad_event_gets_its_reason_and_names_the_field(obj, reason, words):
    err = reject(obj)
    assert err.reason == reason
    assert words in err.message


def test_frame_not_msgpack():
    with pytest.raises(InvalidEvent) as info:
        decode_frame(b"\xc1\xc1 definitely not msgpack", 1024)
    assert info.value.reason == "not_msgpack"


def test_frame_too_large_is_checked_before_decoding():
    with pytest.raises(InvalidEvent) as info:
        decode_frame(encode_events(GOOD), 10)
    assert info.value.reason == "too_large"
    assert "over the limit of 10" in info.value.message


def test_frame_empty_batch_and_scalar():
    with pytest.raises(InvalidEvent) as info:
        decode_frame(msgpack.packb([]), 1024)
    assert info.value.reason == "empty_batch"
    with pytest.raises(InvalidEvent) as info:
        decode_frame(msgpack.packb("hello"), 1024)
    assert info.value.reason == "not_map"


def test_frame_single_map_and_batch_both_decode_to_lists():
    assert decode_frame(encode_events(GOOD), 1024) == [GOOD]
    assert decode_frame(encode_events([GOOD, GOOD]), 1024) == [GOOD, GOOD]


def test_to_wire_round_trips():
    for raw in (GOOD, STATEFUL):
        ev = Event.from_wire(raw)
        assert Event.from_wire(ev.to_wire()) == ev
