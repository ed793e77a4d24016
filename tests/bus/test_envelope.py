"""Envelope validation: every kind of bad input gets its own reason and a clear message."""

from __future__ import annotations

import tracemalloc

import msgpack
import pytest

from bus.envelope import (
    BYTES_PER_CONTAINER,
    BYTES_PER_EVENT,
    REASONS,
    Event,
    Limits,
    decode_frame,
    encode_events,
    unpack_frame,
)
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


# -- input budgets: a frame within max_message_bytes still cannot become gigabytes -----------
MIB4 = 4 * 1024 * 1024


def array32(count: int, item: bytes) -> bytes:
    return b"\xdd" + count.to_bytes(4, "big") + item * count


def tiny_maps_nested(max_bytes: int) -> bytes:
    """Arrays of empty maps, each array under the per-container limit, the frame under
    max_bytes: only the budget over the whole frame stops it."""
    per = Limits.of(max_bytes).max_containers - 1
    inner = array32(per, b"\x80")
    count = max_bytes // len(inner)
    return array32(count, inner)


def over_limit(frame: bytes, max_bytes: int) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        decode_frame(frame, max_bytes)
    assert info.value.reason == "over_limit"
    return info.value


def test_limits_follow_max_message_bytes():
    assert Limits.of(MIB4).max_containers == MIB4 // BYTES_PER_CONTAINER
    assert Limits.of(MIB4).max_events == MIB4 // BYTES_PER_EVENT
    assert Limits.of(10) == Limits(10, 1024, 1024)  # floors for tiny test limits


def test_a_batch_of_more_events_than_its_limit_is_refused_as_a_whole():
    """262 KB of empty maps: each would be refused on its own (a counter, a log check and
    an entry in the reply each, seconds in all); the batch is refused at once instead."""
    most = Limits.of(MIB4).max_events
    assert len(decode_frame(array32(most, b"\x80"), MIB4)) == most
    error = over_limit(array32(most + 1, b"\x80"), MIB4)
    assert f"over the limit of {most}" in error.message


def test_a_frame_of_4_mib_of_tiny_maps_is_refused_without_building_them():
    frame = array32(MIB4 - 5, b"\x80")  # 4 million empty maps in one array
    assert len(frame) <= MIB4
    tracemalloc.start()
    try:
        error = over_limit(frame, MIB4)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "max_array_len" in error.message
    assert peak < 1024 * 1024  # refused from the array's header (it was ~300 MB)


def test_nested_tiny_maps_are_refused_once_the_frame_budget_is_spent():
    frame = tiny_maps_nested(MIB4)
    assert len(frame) <= MIB4
    tracemalloc.start()
    try:
        error = over_limit(frame, MIB4)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "maps and arrays" in error.message
    # about max_containers maps (it was ~300 MB: every map of the frame)
    assert peak < 96 * 1024 * 1024


def test_a_frame_just_within_the_budget_decodes():
    limits = Limits.of(64 * 1024)
    # the top array plus max_containers - 1 maps: exactly the budget
    frame = array32(limits.max_containers - 1, b"\x80")
    assert len(unpack_frame(frame, limits.max_bytes)) == limits.max_containers - 1
    frame = array32(limits.max_containers, b"\x80")
    with pytest.raises(InvalidEvent) as info:
        unpack_frame(frame, limits.max_bytes)
    assert info.value.reason == "over_limit"


def test_long_strings_and_binaries_up_to_the_frame_size_are_fine():
    data = {"s": "x" * 100_000, "b": b"y" * 100_000}
    frame = encode_events({**GOOD, "data": data})
    assert decode_frame(frame, len(frame)) == [{**GOOD, "data": data}]


def test_a_declared_length_over_the_limit_is_refused_before_anything_is_built():
    # an array header claiming 100 million items, in a frame of 5 bytes
    with pytest.raises(InvalidEvent) as info:
        unpack_frame(b"\xdd\x05\xf5\xe1\x00", 1024)
    assert info.value.reason == "over_limit"
    # a string longer than the frame is only truncated msgpack
    with pytest.raises(InvalidEvent) as info:
        unpack_frame(b"\xd9\xc8" + b"x" * 98, 100)
    assert info.value.reason == "not_msgpack"


def test_a_real_batch_of_4_mib_decodes():
    event = {**GOOD, "data": {"event": {"original": "x" * 200}, "log": {"file": {"path": "/v"}}}}
    batch = [event] * (MIB4 // len(encode_events(event)) - 10)
    frame = encode_events(batch)
    assert len(frame) <= MIB4
    assert len(decode_frame(frame, MIB4)) == len(batch)
