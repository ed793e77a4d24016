"""The event envelope: what a collector puts on the bus, validated once at the boundary.

An event on the wire is a msgpack map (docs/bus-protocol.md):

    module     str, required
    collector  str, required (except for ``command`` results, whose header has none)
    type       "stateless" (default) | "stateful"
    data       map, required (not for a stateful ``delete``)
    id         str, stateful only, required: the document id
    operation  "create" | "update" | "delete", stateful only, required
    ts         number (epoch seconds), optional: when the event happened

Unknown fields are ignored. A frame holds one such map, or an array of them (a batch).
The data of a stateless event must not have both a string ``module`` and a string
``collector``: the server would take its data line for a header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import msgpack

from bus.errors import InvalidEvent

EventType = Literal["stateless", "stateful"]
Operation = Literal["create", "update", "delete"]

#: modules the server accepts on the stateful endpoint (docs/protocol.md, "Events")
STATEFUL_MODULES = frozenset({"fim", "inventory", "sca", "vulnerability", "command"})
#: collectors the server accepts for stateful ``inventory`` events (docs/protocol.md)
INVENTORY_COLLECTORS = frozenset(
    {"hardware", "hotfixes", "packages", "networks", "system", "ports", "processes"}
)
OPERATIONS = ("create", "update", "delete")
#: longest module / collector name accepted
MAX_NAME_CHARS = 128
#: longest document id accepted
MAX_ID_CHARS = 512
#: a frame may hold at most one map or array per this many bytes of ``max_message_bytes``.
#: A map costs Python 64-230 bytes however few bytes it takes on the wire (an empty map is
#: one byte), so without a bound a frame of tiny maps becomes ~80 times its size in memory;
#: real events spend 40-70 bytes of the frame per map or array.
BYTES_PER_CONTAINER = 16
#: a batch may hold at most one event per this many bytes of ``max_message_bytes``: each
#: event is validated, and a refused one costs a counter, a log check and an entry in the
#: reply, so a batch of empty maps must not cost seconds (real events are 150 bytes and up)
BYTES_PER_EVENT = 64

#: every reason an input can be rejected for; each is a counter key and appears in replies
REASONS = (
    "not_msgpack",  # the frame does not decode as msgpack
    "too_large",  # the frame is over max_message_bytes
    "over_limit",  # the frame decodes to more maps/arrays or longer items than allowed
    "not_map",  # an event is not a map (or the frame is neither a map nor an array)
    "empty_batch",  # the frame is an empty array
    "missing_field",  # a required field is absent
    "wrong_type",  # a field has the wrong type
    "bad_value",  # a field has a value outside what the server accepts
    "not_json",  # data holds something JSON cannot carry (bytes, non-string keys, ...)
    "multipart",  # a message with an unexpected number of frames
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One validated event; build it with :meth:`from_wire` or the keyword constructor."""

    module: str
    collector: str | None
    data: dict[str, Any] | None
    type: EventType = "stateless"
    id: str | None = None
    operation: Operation | None = None
    ts: float | None = None

    @property
    def stateful(self) -> bool:
        return self.type == "stateful"

    def header(self) -> dict[str, str]:
        """The NDJSON header line of this event (docs/protocol.md, "Events"; the server's
        key order)."""
        if self.type == "stateless":
            return {"module": self.module, "collector": self.collector or ""}
        head: dict[str, str] = {"id": self.id or "", "module": self.module}
        if self.collector is not None:
            head["collector"] = self.collector
        head["operation"] = self.operation or ""
        return head

    def to_wire(self) -> dict[str, Any]:
        """The msgpack-ready map for this event (omits fields that are not set)."""
        out: dict[str, Any] = {"module": self.module, "type": self.type}
        if self.collector is not None:
            out["collector"] = self.collector
        if self.data is not None:
            out["data"] = self.data
        if self.id is not None:
            out["id"] = self.id
        if self.operation is not None:
            out["operation"] = self.operation
        if self.ts is not None:
            out["ts"] = self.ts
        return out

    @classmethod
    def from_wire(cls, obj: Any) -> Event:
        """Validate one decoded map; raises :class:`InvalidEvent` naming the field."""
        if not isinstance(obj, dict):
            raise InvalidEvent("not_map", f"event must be a map, got {_kind(obj)}")
        module = _name(obj, "module")
        etype = obj.get("type", "stateless")
        if etype not in ("stateless", "stateful"):
            raise _bad("type", etype, "must be 'stateless' or 'stateful'")
        ts = obj.get("ts")
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float)):
            raise InvalidEvent("wrong_type", f"ts must be a number, got {_kind(ts)}")
        if ts is not None:
            try:
                ts = float(ts)
            except OverflowError:  # a Python int beyond any float (msgpack never sends one)
                raise InvalidEvent("bad_value", "ts is out of range") from None
        if etype == "stateless":
            name = _name(obj, "collector")
            fields = _data(obj)
            if type(fields.get("module")) is str and type(fields.get("collector")) is str:
                # The server's engine takes any line with string module and collector for
                # a header: this data line would head the next lines and the event vanish.
                raise InvalidEvent(
                    "bad_value",
                    "data must not have both string module and collector fields: the server "
                    "would take the data line for an event header and lose the event "
                    "without an error (rename or nest them)",
                )
            return cls(module=module, collector=name, data=fields, ts=ts)
        if module not in STATEFUL_MODULES:
            raise _bad(
                "module", module, f"stateful module must be one of {sorted(STATEFUL_MODULES)}"
            )
        collector = _name(obj, "collector") if module != "command" or "collector" in obj else None
        if module == "inventory" and collector not in INVENTORY_COLLECTORS:
            raise _bad(
                "collector",
                collector,
                f"inventory collector must be one of {sorted(INVENTORY_COLLECTORS)}",
            )
        doc_id = _string(obj, "id", MAX_ID_CHARS)
        operation = obj.get("operation")
        if operation is None:
            raise InvalidEvent("missing_field", "operation is required for a stateful event")
        if operation not in OPERATIONS:
            raise _bad("operation", operation, "must be create, update or delete")
        data = None if operation == "delete" else _data(obj)
        return cls(
            module=module,
            collector=collector,
            data=data,
            type="stateful",
            id=doc_id,
            operation=operation,
            ts=ts,
        )


@dataclass(frozen=True, slots=True)
class Limits:
    """What one frame may decode to, derived from ``max_message_bytes``."""

    max_bytes: int
    #: maps and arrays in the whole frame, and items in any one of them
    max_containers: int
    #: events in one batch
    max_events: int

    @classmethod
    def of(cls, max_bytes: int) -> Limits:
        return cls(
            max_bytes,
            max(1024, max_bytes // BYTES_PER_CONTAINER),
            max(1024, max_bytes // BYTES_PER_EVENT),
        )


class _Budget:
    """Counts the maps and arrays msgpack builds; raises once there are too many."""

    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left

    def spend(self, obj: Any) -> Any:
        self.left -= 1
        if self.left < 0:
            raise _OverBudget
        return obj


class _OverBudget(Exception):
    pass


def unpack_frame(frame: bytes, max_bytes: int) -> Any:
    """Decode one bus frame within the limits derived from ``max_bytes``.

    Raises :class:`InvalidEvent`: ``too_large`` (the frame), ``over_limit`` (more maps and
    arrays than :class:`Limits` allows, or an item longer than its limit: checked while
    decoding, so the memory used stays a small multiple of ``max_bytes``) or
    ``not_msgpack``. Every socket that reads msgpack from bus clients decodes with this.
    """
    if len(frame) > max_bytes:
        raise InvalidEvent(
            "too_large", f"frame of {len(frame)} bytes is over the limit of {max_bytes}"
        )
    limits = Limits.of(max_bytes)
    hooks: dict[str, Any] = {}
    if len(frame) > limits.max_containers:
        # Only a frame of more bytes than the budget can hold more maps and arrays than
        # it (each takes a byte at least): smaller frames decode without the hooks' cost.
        budget = _Budget(limits.max_containers)
        hooks = {"object_hook": budget.spend, "list_hook": budget.spend}
    try:
        return msgpack.unpackb(
            frame,
            raw=False,
            strict_map_key=False,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_ext_len=max_bytes,
            max_array_len=limits.max_containers,
            max_map_len=limits.max_containers,
            **hooks,
        )
    except _OverBudget:
        raise InvalidEvent(
            "over_limit",
            f"frame holds more than {limits.max_containers} maps and arrays "
            f"(one per {BYTES_PER_CONTAINER} bytes of the {max_bytes}-byte limit)",
        ) from None
    except ValueError as exc:
        if "exceeds max_" in str(exc):  # msgpack's words for a length over its limit
            raise InvalidEvent("over_limit", f"frame holds an item over its limit: {exc}") from None
        raise InvalidEvent("not_msgpack", f"frame is not msgpack: {type(exc).__name__}") from None
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise InvalidEvent("not_msgpack", f"frame is not msgpack: {type(exc).__name__}") from None


def decode_frame(frame: bytes, max_bytes: int) -> list[Any]:
    """Decode one bus frame into a list of raw event maps (a single map becomes a list of one).

    Raises :class:`InvalidEvent` when the frame as a whole is unusable
    (:func:`unpack_frame`); the maps themselves are validated by :meth:`Event.from_wire`.
    """
    obj = unpack_frame(frame, max_bytes)
    if isinstance(obj, dict):
        return [obj]
    if isinstance(obj, list):
        if not obj:
            raise InvalidEvent("empty_batch", "frame is an empty array")
        most = Limits.of(max_bytes).max_events
        if len(obj) > most:
            raise InvalidEvent(
                "over_limit",
                f"batch of {len(obj)} events is over the limit of {most} (one per "
                f"{BYTES_PER_EVENT} bytes of the {max_bytes}-byte limit)",
            )
        return obj
    raise InvalidEvent("not_map", f"frame must be a map or an array of maps, got {_kind(obj)}")


def encode_events(events: list[dict[str, Any]] | dict[str, Any]) -> bytes:
    """Encode one event map or a list of them as a bus frame."""
    return msgpack.packb(events, use_bin_type=True)


def _kind(value: Any) -> str:
    return {
        dict: "map",
        list: "array",
        str: "string",
        bytes: "binary",
        bool: "boolean",
        int: "integer",
        float: "float",
        type(None): "nil",
    }.get(type(value), type(value).__name__)


def _bad(field: str, value: Any, why: str) -> InvalidEvent:
    try:
        shown = repr(value)
    except (RecursionError, ValueError):  # ~1000 nested levels; an int of over 4300 digits
        shown = f"<{_kind(value)}>"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return InvalidEvent("bad_value", f"{field} {shown} is not accepted: {why}")


def _string(obj: dict[str, Any], field: str, max_chars: int) -> str:
    if field not in obj:
        raise InvalidEvent("missing_field", f"{field} is required")
    value = obj[field]
    if not isinstance(value, str):
        raise InvalidEvent("wrong_type", f"{field} must be a string, got {_kind(value)}")
    if not value:
        raise InvalidEvent("bad_value", f"{field} must not be empty")
    if len(value) > max_chars:
        raise InvalidEvent("bad_value", f"{field} is longer than {max_chars} characters")
    return value


def _name(obj: dict[str, Any], field: str) -> str:
    return _string(obj, field, MAX_NAME_CHARS)


def _data(obj: dict[str, Any]) -> dict[str, Any]:
    if "data" not in obj:
        raise InvalidEvent("missing_field", "data is required")
    data = obj["data"]
    if not isinstance(data, dict):
        raise InvalidEvent("wrong_type", f"data must be a map, got {_kind(data)}")
    return data
