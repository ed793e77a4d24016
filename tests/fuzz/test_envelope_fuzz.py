"""Fuzz the envelope and the NDJSON encoder: random input in, either a clear rejection
(``InvalidEvent`` with a reason of ``bus.envelope.REASONS``) or a body the reference
server's parser accepts. Any other exception is a bug.

The renderer under test is the forwarder's (``forwarder.render.Renderer``: a fast path for
plain stateless events, ``Event.from_wire`` + ``comms.ndjson.render_event`` for the rest);
both paths must agree on every input. The server side is ``refserver.ndjson.BodyParser``,
called directly for speed, and a sample of bodies goes over real HTTP to a running
reference server as well.

One known, deliberate gap: the bus envelope checks only that ``data`` is a map, while the
server also checks the shape of a command result (``data.command.result.code/message``).
Only the commander sends ``module: command`` and it sends that shape; anything else is
refused by the server with a 400 and quarantined by the forwarder
(tests/forwarder/test_answers.py). The fuzz test asserts that this is the only case where
the two disagree.
"""

from __future__ import annotations

import sys
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus.client import make_event
from bus.envelope import REASONS, Event, decode_frame, unpack_frame
from bus.errors import InvalidEvent
from comms.api import ServerClient
from comms.credentials import Credentials
from comms.metadata import agent_line
from comms.ndjson import join_body, render_event
from comms.tokens import TokenManager
from forwarder.render import Renderer, check_document_of
from refserver.errors import HTTPError
from refserver.ndjson import BodyParser
from tests.fixtures.agent import TEST_FACTS, EnrolledAgent
from tests.fuzz.strategies import (
    ANY_VALUE,
    FRAMES,
    OVERSIZED_INTS,
    RAW_EVENTS,
    event_maps,
    fuzz_settings,
    near_limit_frames,
    nested,
)

MAX_FRAME = 256 * 1024
CREDENTIALS = Credentials(
    uuid="0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
    key="k" * 32,
    name="fuzz-agent",
    groups=("default", "fuzz"),
    server_url="http://127.0.0.1:9",
)
AGENT_LINE = agent_line(CREDENTIALS, facts=TEST_FACTS)


# -- the oracle -----------------------------------------------------------------------------
def render(renderer: Renderer, obj: Any) -> tuple[bool, bytes] | InvalidEvent:
    """The forwarder's verdict on one item; only InvalidEvent may escape the renderer."""
    try:
        return renderer.render(obj)
    except InvalidEvent as exc:
        assert exc.reason in REASONS, exc
        assert exc.message, exc
        return exc


def slow_path(obj: Any) -> tuple[bool, bytes] | InvalidEvent:
    """The reference path: Event.from_wire and the document check, then comms.ndjson
    (TypeError = not JSON)."""
    try:
        event = Event.from_wire(obj)
        if event.stateful:
            check_document_of(event)
    except InvalidEvent as exc:
        assert exc.reason in REASONS, exc
        return exc
    try:
        return event.stateful, render_event(event)
    except TypeError as exc:
        return InvalidEvent("not_json", str(exc))


def command_shape_gap(obj: Any) -> bool:
    """An accepted command event whose data is not the result shape the server checks."""
    if obj.get("module") != "command" or obj.get("operation") == "delete":
        return False
    result = obj.get("data", {}).get("command", {})
    result = result.get("result") if isinstance(result, dict) else None
    return not (
        isinstance(result, dict)
        and type(result.get("code")) is int
        and isinstance(result.get("message"), str)
    )


def parse(kind: str, body: bytes) -> BodyParser:
    parser = BodyParser(kind)  # type: ignore[arg-type]
    parser.feed(body)
    parser.finish()
    return parser


def check_items(items: list[Any]) -> dict[str, list[bytes]]:
    """Render every item, check both paths agree, parse the accepted ones as the server
    would; returns the rendered events by kind (the ones the server accepts)."""
    renderer = Renderer()
    accepted: dict[str, list[tuple[Any, bytes]]] = {"stateless": [], "stateful": []}
    for obj in items:
        fast, slow = render(renderer, obj), slow_path(obj)
        if isinstance(fast, InvalidEvent):
            assert isinstance(slow, InvalidEvent), (obj, fast, slow)
            assert fast.reason == slow.reason, (obj, fast, slow)
            continue
        assert fast == slow, obj
        stateful, lines = fast
        accepted["stateful" if stateful else "stateless"].append((obj, lines))

    good: dict[str, list[bytes]] = {}
    for kind, pairs in accepted.items():
        ok = []
        for obj, lines in pairs:
            if kind == "stateful" and command_shape_gap(obj):
                with pytest.raises(HTTPError) as refused:
                    parse(kind, join_body(AGENT_LINE, [lines]))
                assert refused.value.status == 400
                assert "data.command" in refused.value.message, refused.value.message
            else:
                ok.append((obj, lines))
        if not ok:
            continue
        try:
            parser = parse(kind, join_body(AGENT_LINE, [lines for _obj, lines in ok]))
        except HTTPError as exc:  # pragma: no cover - this is the failure being hunted
            raise AssertionError(f"server refused {ok!r}: {exc.status} {exc.message}") from None
        if kind == "stateless":
            assert len(parser.stateless) == len(ok)
            for (obj, lines), (module, collector, _head, data) in zip(
                ok, parser.stateless, strict=True
            ):
                assert (module, collector) == (obj["module"], obj["collector"])
                assert orjson.loads(data) == orjson.loads(lines.split(b"\n")[1])
        else:
            assert len(parser.stateful) == len(ok)
            for (obj, _lines), row in zip(ok, parser.stateful, strict=True):
                assert (row.doc_id, row.module, row.operation) == (
                    obj["id"],
                    obj["module"],
                    obj["operation"],
                )
                assert (row.data is None) == (obj["operation"] == "delete")
        good[kind] = [lines for _obj, lines in ok]
    return good


# -- pure: renderer against the server's parser ---------------------------------------------
@fuzz_settings(max_examples=400)
@given(st.lists(RAW_EVENTS, min_size=1, max_size=6))
def test_decoded_items_are_rejected_with_a_reason_or_accepted_by_the_server(
    items: list[Any],
) -> None:
    check_items(items)


@fuzz_settings(max_examples=300)
@given(FRAMES)
def test_wire_frames_are_rejected_with_a_reason_or_accepted_by_the_server(frame: bytes) -> None:
    try:
        objs = decode_frame(frame, MAX_FRAME)
    except InvalidEvent as exc:
        assert exc.reason in ("not_msgpack", "too_large", "over_limit", "not_map", "empty_batch")
        return
    check_items(objs)


@fuzz_settings(max_examples=150)
@given(near_limit_frames(MAX_FRAME))
def test_frames_near_every_limit_are_accepted_below_and_refused_above(
    case: tuple[str, bytes, str | None],
) -> None:
    """Just under a limit decodes; just over it is refused with that limit's reason."""
    kind, frame, reason = case
    try:
        if kind == "batch":
            assert len(decode_frame(frame, MAX_FRAME)) <= len(frame)
        else:
            unpack_frame(frame, MAX_FRAME)
    except InvalidEvent as exc:
        assert exc.reason == reason, (kind, exc)
    else:
        assert reason is None, f"{kind}: {len(frame)}-byte frame decoded, expected {reason}"


@fuzz_settings(max_examples=150)
@given(
    event_maps(),
    st.sampled_from(["ts", "type", "module", "id", "operation", "data"]),
    OVERSIZED_INTS,
)
def test_python_values_msgpack_cannot_carry_are_rejected_too(
    obj: dict[Any, Any], field: str, value: int
) -> None:
    """Python collectors build events with ``bus.client.make_event`` (Event.from_wire), so
    values that never come out of msgpack (integers beyond 64 bits) must get a clear
    rejection as well, not an OverflowError."""
    obj = {**obj, field: {"n": [value]} if field == "data" else value}
    check_items([obj])
    try:
        make_event(
            "m",
            "c",
            {},
            stateful=field != "ts",
            id=obj.get("id") if isinstance(obj.get("id"), str) else None,
            operation=obj.get("operation") if isinstance(obj.get("operation"), str) else None,
            ts=value,  # type: ignore[arg-type]
        )
    except InvalidEvent as exc:
        assert exc.reason in REASONS


@fuzz_settings(max_examples=100)
@given(ANY_VALUE)
def test_any_value_as_a_whole_frame_is_rejected_or_accepted(value: Any) -> None:
    check_items([value])


# -- over real HTTP -----------------------------------------------------------------------
@pytest.mark.timeout(90)
@fuzz_settings(max_examples=30)
@given(items=st.lists(RAW_EVENTS, min_size=1, max_size=8))
def test_accepted_bodies_are_accepted_by_a_running_server(
    enrolled_agent: EnrolledAgent, items: list[Any]
) -> None:
    """The same bodies, posted with the agent's own client to the reference server."""
    config, credentials, server = enrolled_agent
    client = _client(config, credentials)
    line = agent_line(credentials, facts=TEST_FACTS)
    good = check_items(items)
    for kind, rendered in good.items():
        before = server.count_events(type=kind)
        reply = client.post_events(kind, join_body(line, rendered))  # type: ignore[arg-type]
        if kind == "stateless":
            assert reply.status == 204, reply.message()
        else:
            assert reply.status == 200, reply.message()
            results = reply.json()["results"]
            assert len(results) == len(rendered)
        assert server.count_events(type=kind) == before + len(rendered)


_CLIENTS: dict[str, ServerClient] = {}


def _client(config: Any, credentials: Credentials) -> ServerClient:
    """One client per enrolled agent (hypothesis calls the test body many times)."""
    client = _CLIENTS.get(credentials.uuid)
    if client is None:
        _CLIENTS.clear()
        client = _CLIENTS[credentials.uuid] = ServerClient(
            config, TokenManager(config, credentials)
        )
    return client


@pytest.mark.parametrize(
    "event",
    [
        {"module": "m", "collector": "c", "data": {}, "type": nested(1000)},
        {
            "module": "fim",
            "collector": "c",
            "type": "stateful",
            "id": "x",
            "data": {},
            "operation": nested(1000),
        },
        {
            "module": "inventory",
            "collector": nested(999),
            "type": "stateful",
            "id": "x",
            "operation": "create",
            "data": {},
        },
    ],
)
def test_deeply_nested_field_values_off_the_wire_are_rejected_not_crashing(
    event: dict[str, Any],
) -> None:
    """Found by the fuzzer: msgpack decodes ~1000 levels of nesting, and the message of a
    ``bad_value`` rejection called repr() on it, which overflowed the stack at Python's
    default recursion limit (hypothesis raises that limit, hence this plain test): one
    such frame stopped the forwarder. Runs at the default limit of a service process."""
    assert sys.getrecursionlimit() <= 1000
    [obj] = decode_frame(msgpack.packb(event, use_bin_type=True), MAX_FRAME)
    result = render(Renderer(), obj)
    assert isinstance(result, InvalidEvent)
    assert result.reason in ("bad_value", "wrong_type")
