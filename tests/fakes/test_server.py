"""The fake server against the reference server: the same items for the same events, and
the same bodies parsed back into the same events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bus.indices import index_name
from comms.errors import BadResponse, ServerUnreachable
from forwarder.render import Renderer
from refserver.documents import StatefulRow, apply
from tests.fakes.server import FakeServer, commands, parse_body, reply
from tests.forwarder.helpers import AGENT_LINE, inventory_package, stateless

#: a life of two documents with every outcome: 201, 409, 200, 404 update, 404 delete
LIFE: list[dict[str, Any]] = [
    inventory_package("a"),
    inventory_package("a", name="again"),
    inventory_package("a", "update", name="a2"),
    inventory_package("b", "update"),
    inventory_package("b", "delete"),
    inventory_package("a", "delete"),
    inventory_package("a", "delete"),
    inventory_package("a", name="a3"),
    inventory_package("a", "update", architecture="amd64"),
]


def body_of(events: list[dict[str, Any]]) -> bytes:
    renderer = Renderer()
    return b"\n".join([AGENT_LINE, *(renderer.render(e)[1] for e in events)])


def row(event: dict[str, Any]) -> StatefulRow:
    data = event.get("data")
    return StatefulRow(
        header="",
        data=None if data is None else orjson.dumps(data).decode(),
        value=data,
        doc_id=event["id"],
        module=event["module"],
        collector=event.get("collector"),
        operation=event["operation"],
        result=None,
    )


def test_the_items_and_documents_are_the_reference_servers() -> None:
    fake = FakeServer()
    got = fake.post_events("stateful", body_of(LIFE))
    current: dict[tuple[str, str], str] = {}
    expected = apply([row(e) for e in LIFE], current)
    fake_items = orjson.loads(got.body)["results"]
    assert [i["status"] for i in fake_items] == [i["status"] for i in expected.results]
    assert [i["status"] for i in fake_items] == [201, 409, 200, 404, 404, 200, 404, 201, 200]
    assert [(i["index"], i["id"]) for i in fake_items] == [
        (i["index"], i["id"]) for i in expected.results
    ]
    assert fake.documents == {k: orjson.loads(v) for k, v in current.items()}
    index = index_name("inventory", "packages")
    assert fake.documents[(index, "a")] == {
        "package": {"name": "a", "version": "1.0", "architecture": "amd64"}
    }


def test_a_body_is_parsed_back_into_the_events_sent() -> None:
    events = [stateless(1), stateless(2)]
    agent, parsed = parse_body(body_of(events), stateful=False)
    assert agent == orjson.loads(AGENT_LINE)
    assert parsed == events
    # a stateful event: its header's fields, and its data unless it is a delete
    _agent, parsed = parse_body(body_of(LIFE[2:5]), stateful=True)
    keep = ("id", "module", "collector", "operation", "data")
    assert parsed == [{k: e[k] for k in keep if k in e} for e in LIFE[2:5]]
    assert "data" not in parsed[-1]


def test_the_long_poll_follows_the_clients_rules() -> None:
    fake = FakeServer()
    fake.script(
        "commands",
        reply(408),
        commands({"document_id": "d1", "action": {"name": "x", "args": {}}}),
        reply(503, "busy", retry_after=7),
        reply(404, "nope"),
    )
    assert fake.get_commands(5) == []
    assert [c["document_id"] for c in fake.get_commands(5)] == ["d1"]
    with pytest.raises(ServerUnreachable) as unreachable:
        fake.get_commands(5)
    assert unreachable.value.retry_after == 7
    with pytest.raises(BadResponse, match=r"nope \(HTTP 404\)"):
        fake.get_commands(5)
    assert fake.statuses("commands") == [408, 200, 503, 404]
