"""Messages on the results PULL socket, validated like any bus input.

Executors push three kinds of maps (docs/bus-protocol.md):

- ``{"ack": "<id>"}`` — the command arrived; stop publishing it;
- ``{"id": "<id>", "code": 0..4, "message": "<text>"}`` — the command's result;
- ``{"hello": ["<topic>", ...], "executor": "<name>"}`` — this executor serves these topics.

Anything else is rejected with a reason key (counted in ``bad_input`` by reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bus.envelope import unpack_frame
from bus.errors import InvalidEvent
from bus.results import MAX_MESSAGE_CHARS, ResultCode

#: most topics one hello may name
MAX_TOPICS = 256


@dataclass(frozen=True, slots=True)
class Ack:
    id: str


@dataclass(frozen=True, slots=True)
class Result:
    id: str
    code: ResultCode
    message: str


@dataclass(frozen=True, slots=True)
class Hello:
    topics: tuple[str, ...]
    executor: str


Message = Ack | Result | Hello


def parse(frames: list[bytes], max_bytes: int) -> Message:
    """Decode and validate one message; raises :class:`InvalidEvent` with a reason key."""
    if len(frames) != 1:
        raise InvalidEvent("multipart", f"expected one frame, got {len(frames)}")
    obj = unpack_frame(frames[0], max_bytes)  # too_large, over_limit, not_msgpack
    if not isinstance(obj, dict):
        raise InvalidEvent("not_map", "message must be a map")
    if "ack" in obj:
        return Ack(_id(obj, "ack"))
    if "hello" in obj:
        return _hello(obj)
    if "id" in obj or "code" in obj:
        return _result(obj)
    raise InvalidEvent("missing_field", "message has none of ack, hello or id")


def _id(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise InvalidEvent("wrong_type", f"{key} must be a string")
    if not value:
        raise InvalidEvent("bad_value", f"{key} must not be empty")
    return value


def _result(obj: dict[str, Any]) -> Result:
    cid = _id(obj, "id")
    if "code" not in obj:
        raise InvalidEvent("missing_field", "code is required")
    code = obj["code"]
    if isinstance(code, bool) or not isinstance(code, int):
        raise InvalidEvent("wrong_type", "code must be an integer")
    valid = ResultCode.of(code)
    if valid is None:
        raise InvalidEvent("bad_value", f"code {code} is not one of 0-4")
    message = obj.get("message", "")
    if not isinstance(message, str):
        raise InvalidEvent("wrong_type", "message must be a string")
    return Result(cid, valid, message[:MAX_MESSAGE_CHARS])


def _hello(obj: dict[str, Any]) -> Hello:
    topics = obj["hello"]
    if not isinstance(topics, list) or not all(isinstance(t, str) and t for t in topics):
        raise InvalidEvent("wrong_type", "hello must be a list of non-empty strings")
    if len(topics) > MAX_TOPICS:
        raise InvalidEvent("bad_value", f"hello names more than {MAX_TOPICS} topics")
    name = obj.get("executor", "")
    if not isinstance(name, str):
        raise InvalidEvent("wrong_type", "executor must be a string")
    return Hello(tuple(topics), name or "unnamed")
