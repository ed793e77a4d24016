"""Hypothesis strategies for hostile bus input, and the settings every fuzz test uses.

Inputs mix three kinds so that both sides of the boundary get exercised: events that are
valid or one field away from valid (most of them are accepted, so the renderer and the
server's parser really run), maps whose fields hold any msgpack-able value (bytes,
non-string keys, NaN/infinity, integers beyond 64 bits, deep nesting, odd unicode), and
values that are not maps at all.
"""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from bus.envelope import INVENTORY_COLLECTORS, OPERATIONS, STATEFUL_MODULES, Limits


def fuzz_settings(max_examples: int, **extra: Any) -> settings:
    """Reproducible runs (CI sees the same examples every time), no example database, no
    per-example deadline (real sockets and a real server answer at their own pace)."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            # The services under test are started once per test on purpose: they must
            # survive every example, one after the other.
            HealthCheck.function_scoped_fixture,
        ],
        **extra,
    )


#: strings a server or a terminal may choke on: controls, line separators, RTL marks, NUL,
#: astral-plane characters, combining marks, JSON and NDJSON syntax (never lone surrogates:
#: msgpack cannot encode them and orjson refuses them)
WEIRD_STRINGS = st.one_of(
    st.text(max_size=24),
    st.text(
        alphabet=st.sampled_from(
            [
                "\x00",
                "\n",
                "\r",
                "\t",
                "\u2028",
                "\u2029",
                "\u202e",
                "\ufeff",
                "\U0001f600",
                "\u0301",
                '"',
                "\\",
                "{",
                "}",
                "[",
                "]",
                ":",
                ",",
                "é",
                "\x7f",
                "\U0010ffff",
            ]
        ),
        max_size=16,
    ),
)

HUGE_INTS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, -(2**63)]),
)
#: integers msgpack cannot carry (only reachable through the Python SDK, not over the wire)
OVERSIZED_INTS = st.sampled_from([2**64, -(2**63) - 1, 2**100, -(2**200), 10**400])

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    HUGE_INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    WEIRD_STRINGS,
    st.binary(max_size=16),
)
ANY_KEYS = st.one_of(
    WEIRD_STRINGS, st.integers(), st.binary(max_size=6), st.none(), st.booleans(), st.floats()
)


def nested(depth: int, leaf: Any = "x") -> Any:
    """``depth`` levels of alternating lists and maps around ``leaf``."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


#: up to what msgpack itself nests (1024 levels); repr() of ~1000 levels overflows Python's stack
DEEP = st.one_of(st.integers(min_value=1, max_value=1000), st.sampled_from([990, 1000])).map(nested)

#: any value msgpack can decode into (maps may have non-string keys)
ANY_VALUE = st.one_of(
    st.recursive(
        SCALARS,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(ANY_KEYS, children, max_size=4)
        ),
        max_leaves=12,
    ),
    DEEP,
)
#: values JSON can carry (string keys only); NaN/infinity are kept: they render as null
JSON_VALUE = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        HUGE_INTS,
        st.floats(allow_nan=True, allow_infinity=True),
        WEIRD_STRINGS,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(WEIRD_STRINGS, children, max_size=4)
    ),
    max_leaves=16,
)
JSON_MAP = st.dictionaries(WEIRD_STRINGS, JSON_VALUE, max_size=5)

ABSENT = object()


def _field(good: st.SearchStrategy[Any], weight_bad: bool = True) -> st.SearchStrategy[Any]:
    """A field that is usually plausible, sometimes absent, sometimes anything at all."""
    choices = [good, good, st.just(ABSENT)]
    if weight_bad:
        choices.append(ANY_VALUE)
    return st.one_of(*choices)


NAMES = st.one_of(
    st.sampled_from(
        ["logcollector", "file", "fim", "inventory", "command", "sca", "vulnerability", "m"]
    ),
    st.sampled_from(sorted(INVENTORY_COLLECTORS)),
    WEIRD_STRINGS,
    st.text(min_size=120, max_size=140),  # around MAX_NAME_CHARS
)


@st.composite
def event_maps(draw: st.DrawFn) -> dict[Any, Any]:
    """A map shaped like an event: each field plausible, absent or random."""
    stateful = draw(st.booleans())
    fields: dict[Any, Any] = {
        "module": draw(_field(st.sampled_from(sorted(STATEFUL_MODULES)) if stateful else NAMES)),
        "collector": draw(_field(NAMES)),
        "type": draw(
            _field(st.just("stateful") if stateful else st.sampled_from(["stateless", ABSENT]))
        ),
        "data": draw(_field(st.one_of(JSON_MAP, JSON_MAP, st.dictionaries(ANY_KEYS, ANY_VALUE)))),
        "id": draw(_field(WEIRD_STRINGS if stateful else st.just(ABSENT))),
        "operation": draw(_field(st.sampled_from(OPERATIONS) if stateful else st.just(ABSENT))),
        "ts": draw(
            st.one_of(
                st.just(ABSENT),
                st.floats(allow_nan=True, allow_infinity=True),
                HUGE_INTS,
                ANY_VALUE,
            )
        ),
    }
    out = {k: v for k, v in fields.items() if v is not ABSENT}
    if stateful and out.get("module") == "command" and draw(st.booleans()):
        # a command result in the shape the server checks (code, message)
        out["data"] = {
            "command": {"result": {"code": draw(st.integers(0, 4)), "message": draw(WEIRD_STRINGS)}}
        }
    extra = draw(st.dictionaries(ANY_KEYS, ANY_VALUE, max_size=2))
    for key, value in extra.items():
        out.setdefault(key, value)
    return out


GOOD_NAMES = NAMES.filter(lambda n: 0 < len(n) <= 128)


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    """An event the bus accepts: weird strings and data, but every field as it should be."""
    ts = draw(st.one_of(st.just(ABSENT), st.floats(allow_nan=True), HUGE_INTS))
    out: dict[str, Any] = {} if ts is ABSENT else {"ts": ts}
    if draw(st.booleans()):
        out.update(module=draw(GOOD_NAMES), collector=draw(GOOD_NAMES), data=draw(JSON_MAP))
        if draw(st.booleans()):
            out["type"] = "stateless"
        return out
    module = draw(st.sampled_from(sorted(STATEFUL_MODULES)))
    operation = draw(st.sampled_from(OPERATIONS))
    out.update(type="stateful", module=module, operation=operation)
    out["id"] = draw(WEIRD_STRINGS.filter(lambda i: 0 < len(i) <= 512))
    if module == "inventory":
        out["collector"] = draw(st.sampled_from(sorted(INVENTORY_COLLECTORS)))
    elif module != "command" or draw(st.booleans()):
        out["collector"] = draw(GOOD_NAMES)
    if operation != "delete":
        if module == "command":
            out["data"] = {
                "command": {
                    "result": {"code": draw(st.integers(0, 4)), "message": draw(WEIRD_STRINGS)}
                }
            }
        else:
            out["data"] = draw(JSON_MAP)
    return out


#: one decoded bus item: valid events, event-shaped maps with random fields, anything
RAW_EVENTS = st.one_of(valid_events(), event_maps(), valid_events(), event_maps(), ANY_VALUE)


def packable(obj: Any) -> bytes | None:
    """The msgpack frame of ``obj``, or None when msgpack cannot carry it."""
    try:
        return msgpack.packb(obj, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        return None


#: frames as a hostile local client may send them
FRAMES = st.one_of(
    st.binary(max_size=64),  # garbage
    RAW_EVENTS.map(packable).filter(lambda f: f is not None),  # one item
    st.lists(RAW_EVENTS, max_size=4).map(packable).filter(lambda f: f is not None),  # batches
    ANY_VALUE.map(packable).filter(lambda f: f is not None),  # any value at all
    st.binary(min_size=1, max_size=40).map(lambda b: msgpack.packb(b"x") + b),  # trailing data
)


# -- frames near every limit of bus.envelope.Limits ------------------------------------------
def _head(kind: int, count: int) -> bytes:
    """A 32-bit array (0xdd), map (0xdf), bin (0xc6) or str (0xdb) header."""
    return bytes([kind]) + count.to_bytes(4, "big")


def _nested_maps(total: int) -> bytes:
    """An array of two arrays of empty maps: ``total`` maps and arrays in all."""
    maps = total - 3
    first = maps // 2
    return (
        _head(0xDD, 2)
        + _head(0xDD, first)
        + b"\x80" * first
        + _head(0xDD, maps - first)
        + b"\x80" * (maps - first)
    )


@st.composite
def near_limit_frames(draw: st.DrawFn, max_bytes: int) -> tuple[str, bytes, str | None]:
    """A frame a few units either side of one limit: (the limit, the frame, the reason it
    must get; None: it must decode). Limits: the frame's bytes (a str, a bin), the items
    of one array, the pairs of one map, the maps and arrays of the whole frame, and the
    events of a batch (this one checked by ``decode_frame``, the others by
    ``unpack_frame``)."""
    limits = Limits.of(max_bytes)
    cap = limits.max_containers
    delta = draw(st.integers(min_value=-3, max_value=3))
    kind = draw(st.sampled_from(["str", "bin", "array", "map", "frame_budget", "batch"]))
    if kind == "batch":
        count = limits.max_events + delta
        return kind, _head(0xDD, count) + b"\x80" * count, "over_limit" if delta > 0 else None
    if kind in ("str", "bin"):
        size = max_bytes - 5 + delta
        frame = _head(0xDB if kind == "str" else 0xC6, size) + b"x" * size
        return kind, frame, "too_large" if delta > 0 else None
    if kind == "array":
        frame = _head(0xDD, cap + delta) + b"\xc0" * (cap + delta)
        return kind, frame, "over_limit" if delta > 0 else None
    if kind == "map":
        pairs = b"".join(msgpack.packb(i) + b"\xc0" for i in range(cap + delta))
        return kind, _head(0xDF, cap + delta) + pairs, "over_limit" if delta > 0 else None
    frame = _nested_maps(cap + delta)
    assert len(frame) <= max_bytes
    return kind, frame, "over_limit" if delta > 0 else None
