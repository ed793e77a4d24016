"""forwarder.render: validate a raw event and render it as its NDJSON lines, and the
refusals at the bus of what the server would lose or refuse."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bus.envelope import Event
from bus.errors import InvalidEvent
from comms.ndjson import render_event
from forwarder.render import Renderer
from tests.forwarder.helpers import inventory_package

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


@pytest.mark.parametrize("extra", [{}, {"ts": 1.5}, {"type": "stateless"}])
def test_stateless_data_that_looks_like_a_header_is_refused_on_both_paths(
    extra: dict[str, Any],
) -> None:
    event = {"module": "app", "collector": "c", "data": {"module": "a", "collector": "b"}, **extra}
    with pytest.raises(InvalidEvent) as info:
        Renderer().render(event)
    assert info.value.reason == "bad_value"
    assert "header" in info.value.message and "lose the event" in info.value.message
    # one of the two is enough to be a header only with the other: these are fine
    for data in ({"module": "a"}, {"module": "a", "collector": 5}, {"x": {"module": "a"}}):
        assert Renderer().render({**event, "data": data})[0] is False


def test_stateful_documents_the_index_refuses_are_refused_with_the_field_and_index() -> None:
    renderer = Renderer()
    with pytest.raises(InvalidEvent) as info:
        renderer.render(inventory_package("p1", nope=1))
    assert info.value.reason == "bad_value"
    message = info.value.message
    assert "data.package.nope" in message and "wazuh-states-inventory-packages" in message
    assert "strict_dynamic_mapping_exception" in message

    with pytest.raises(InvalidEvent) as info:
        renderer.render(inventory_package("p1", size="big"))
    assert "data.package.size" in info.value.message
    assert "mapper_parsing_exception" in info.value.message

    empty = {**inventory_package("p1", "update"), "data": {}}
    with pytest.raises(InvalidEvent) as info:
        renderer.render(empty)
    assert info.value.reason == "bad_value" and "empty" in info.value.message

    # a delete has no document; a valid document passes
    assert renderer.render(inventory_package("p1", "delete"))[0] is True
    assert renderer.render(inventory_package("p1", size=10))[0] is True


def test_a_document_of_an_index_without_a_known_mapping_is_checked_for_what_any_refuses() -> None:
    event = {"module": "vulnerability", "collector": "scanner", "type": "stateful", "id": "v"}
    renderer = Renderer()
    assert renderer.render({**event, "operation": "create", "data": {"anything": 1}})[0]
    for data in ({"agent": {"id": "x"}}, {"": 1}):
        with pytest.raises(InvalidEvent) as info:
            renderer.render({**event, "operation": "update", "data": data})
        assert "wazuh-states-vulnerabilities" in info.value.message


def test_check_documents_off_lets_the_server_decide() -> None:
    renderer = Renderer(check_documents=False)
    assert renderer.render(inventory_package("p1", nope=1))[0] is True
    with pytest.raises(InvalidEvent):  # {} is refused whatever the mapping
        renderer.render({**inventory_package("p1"), "data": {}})
