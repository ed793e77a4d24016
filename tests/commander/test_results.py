"""Validation of the results socket's messages: each kind of bad input has its reason."""

from __future__ import annotations

import msgpack
import pytest

from bus.envelope import REASONS
from bus.errors import InvalidEvent
from commander.results import Ack, Hello, Result, parse


def frame(obj: object) -> list[bytes]:
    return [msgpack.packb(obj)]


def test_the_three_message_kinds():
    assert parse(frame({"ack": "d1"}), 1000) == Ack("d1")
    assert parse(frame({"id": "d1", "code": 0, "message": "ok"}), 1000) == Result("d1", 0, "ok")
    assert parse(frame({"id": "d1", "code": 3}), 1000) == Result("d1", 3, "")
    assert parse(frame({"hello": ["a", "b"], "executor": "x"}), 1000) == Hello(("a", "b"), "x")


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([b"a", b"b"], "multipart"),
        ([b"\xc1"], "not_msgpack"),
        (frame([1, 2]), "not_map"),
        ([b"\x00" * 2000], "too_large"),
        (frame({"what": 1}), "missing_field"),
        (frame({"ack": 5}), "wrong_type"),
        (frame({"ack": ""}), "bad_value"),
        (frame({"id": "d", "code": "0"}), "wrong_type"),
        (frame({"id": "d", "code": True}), "wrong_type"),
        (frame({"id": "d", "code": 9}), "bad_value"),
        (frame({"id": "d"}), "missing_field"),
        (frame({"id": "d", "code": 0, "message": 5}), "wrong_type"),
        (frame({"hello": "agent"}), "wrong_type"),
        (frame({"hello": ["a"], "executor": 1}), "wrong_type"),
    ],
)
def test_bad_messages_are_rejected_with_a_known_reason(frames, reason):
    with pytest.raises(InvalidEvent) as info:
        parse(frames, 1000)
    assert info.value.reason == reason
    assert reason in REASONS


def test_long_messages_are_cut():
    result = parse(frame({"id": "d", "code": 1, "message": "x" * 10_000}), 1_000_000)
    assert isinstance(result, Result) and len(result.message) == 4096
