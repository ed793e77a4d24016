"""Events endpoints (docs/protocol.md §2, Events): every body rule, good form and bad form."""

from __future__ import annotations

import gzip
import time

import pytest
import requests

from tests.refserver.helpers import (
    dumps,
    error_of,
    stateful_header,
    stateless_pair,
    valid_data,
)

DATA = dumps({"x": 1})


def _raw_post(agent, kind: str, body: bytes, **headers: str) -> requests.Response:
    return requests.post(
        f"{agent.url}/api/v1/events/{kind}",
        data=body,
        headers=agent.headers(**headers),
        timeout=30,
    )


# -- stateless ---------------------------------------------------------------------------------
def test_stateless_good_body_is_204_empty_and_stored(shared_server, agent) -> None:
    lines = stateless_pair(n=1) + stateless_pair("custom", "tool", n=2)
    r = agent.post("stateless", lines)
    assert r.status_code == 204 and r.content == b""
    events = shared_server.events(agent=agent.id)
    assert [(e["module"], e["collector"]) for e in events] == [
        ("logcollector", "file"),
        ("custom", "tool"),
    ]
    first = events[0]
    assert first["type"] == "stateless" and first["agent_id"] == agent.id
    assert first["header"] == {"module": "logcollector", "collector": "file"}
    assert first["data"]["event"]["original"] == "line 1"
    assert first["received"] > 0
    [me] = [a for a in shared_server.agents() if a["id"] == agent.id]
    assert me["groups"] == ["default"] and me["user_agent"].startswith("agentbus/")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        # an empty line anywhere, and a trailing newline (an empty last line)
        (["{AGENT}", "", *stateless_pair()], "line is empty (line 2)"),
        (["{AGENT}", *stateless_pair(), ""], "line is empty (line 4)"),
        # fewer than 3 lines
        (["{AGENT}", stateless_pair()[0]], "data line missing after header (line 2)"),
        # a header without its data line
        (
            ["{AGENT}", *stateless_pair(), stateless_pair()[0]],
            "data line missing after header (line 4)",
        ),
        # lines that are not JSON objects
        (["{AGENT}", "{not json", DATA], "line is not valid JSON (line 2)"),
        (["{AGENT}", stateless_pair()[0], "[1, 2]"], "line must be a JSON object (line 3)"),
        (["{AGENT}", stateless_pair()[0], '"text"'], "line must be a JSON object (line 3)"),
        # header fields
        (["{AGENT}", dumps({"module": "m"}), DATA], "header.collector field required (line 2)"),
        (["{AGENT}", dumps({"collector": "c"}), DATA], "header.module field required (line 2)"),
        (
            ["{AGENT}", dumps({"module": 1, "collector": "c"}), DATA],
            "header.module input should be a valid string (line 2)",
        ),
        # the agent metadata line
        ([*stateless_pair(), DATA], "agent field required (line 1)"),
        (
            [dumps({"agent": {"host": {}}}), *stateless_pair()],
            "agent.groups field required (line 1)",
        ),
        (
            [dumps({"agent": {"groups": []}}), *stateless_pair()],
            "agent.host field required (line 1)",
        ),
        (
            [dumps({"agent": {"groups": "default", "host": {}}}), *stateless_pair()],
            "agent.groups input should be a valid list (line 1)",
        ),
        (
            [dumps({"agent": {"groups": [1], "host": {}}}), *stateless_pair()],
            "agent.groups.0 input should be a valid string (line 1)",
        ),
    ],
)
def test_stateless_bad_bodies_are_400_and_store_nothing(
    shared_server, agent, lines, message
) -> None:
    body = "\n".join(agent.metadata() if line == "{AGENT}" else line for line in lines)
    r = _raw_post(agent, "stateless", body.encode())
    assert error_of(r) == (400, message, 400)
    assert shared_server.count_events(agent=agent.id) == 0


def test_agent_line_with_empty_groups_is_accepted(shared_server, agent) -> None:
    agent.groups = ()
    assert agent.post("stateless", stateless_pair()).status_code == 204


def test_empty_body_is_400(agent) -> None:
    r = _raw_post(agent, "stateless", b"")
    assert error_of(r)[:1] == (400,)


def test_compressed_body_is_refused(shared_server, agent) -> None:
    body = "\n".join([agent.metadata(), *stateless_pair()]).encode()
    r = _raw_post(agent, "stateless", gzip.compress(body), **{"Content-Encoding": "gzip"})
    assert error_of(r) == (400, "Content-Encoding gzip is not supported", 400)
    assert shared_server.count_events(agent=agent.id) == 0


def test_content_type_must_be_application_json(agent) -> None:
    body = "\n".join([agent.metadata(), *stateless_pair()]).encode()
    r = _raw_post(agent, "stateless", body, **{"Content-Type": "application/x-ndjson"})
    assert error_of(r) == (
        400,
        "Content-Type must be application/json, not application/x-ndjson",
        400,
    )


def test_events_need_a_token(shared_server) -> None:
    r = requests.post(f"{shared_server.url}/api/v1/events/stateless", data=b"{}", timeout=10)
    assert error_of(r) == (403, "Not authenticated", 403)


def test_body_streamed_in_small_chunks_is_parsed_the_same(shared_server, agent) -> None:
    body = "\n".join([agent.metadata(), *stateless_pair(n=1), *stateless_pair(n=2)]).encode()

    def chunks():
        for i in range(0, len(body), 7):
            yield body[i : i + 7]

    r = requests.post(
        f"{agent.url}/api/v1/events/stateless", data=chunks(), headers=agent.headers(), timeout=30
    )
    assert r.status_code == 204
    assert [e["data"]["event"]["original"] for e in shared_server.events(agent=agent.id)] == [
        "line 1",
        "line 2",
    ]


@pytest.mark.timeout(120)
def test_large_stateless_body_is_stored_whole(shared_server, agent) -> None:
    lines: list[str] = []
    for n in range(20_000):
        lines += stateless_pair(n=n)
    r = agent.post("stateless", lines)
    assert r.status_code == 204
    assert shared_server.count_events(agent=agent.id) == 20_000


# -- stateless: the engine's reading -----------------------------------------------------------
def _header(module: str = "logcollector", collector: str = "file") -> str:
    return dumps({"module": module, "collector": collector})


def _data(text: str, **extra: object) -> str:
    return dumps({"event": {"original": text}, **extra})


def test_one_header_covers_every_data_line_after_it(shared_server, agent) -> None:
    r = agent.post("stateless", [_header(), _data("a"), _data("b"), _data("c")])
    assert r.status_code == 204
    events = shared_server.events(agent=agent.id)
    assert [(e["module"], e["data"]["event"]["original"]) for e in events] == [
        ("logcollector", "a"),
        ("logcollector", "b"),
        ("logcollector", "c"),
    ]


def test_a_data_line_with_module_and_collector_is_swallowed_and_counted(refserver) -> None:
    from tests.refserver.helpers import enroll

    agent = enroll(refserver.url)
    lines = [
        _header(),
        _data("kept 1"),
        _header("custom", "tool"),
        # an event whose own fields look like a header: the engine takes it for one
        _data("lost", module="audit", collector="auditd"),
        _header(),
        _data("kept 2"),
    ]
    assert agent.post("stateless", lines).status_code == 204  # no error: lost silently
    events = refserver.events(agent=agent.id)
    assert [e["data"]["event"]["original"] for e in events] == ["kept 1", "kept 2"]
    assert refserver.stateless_swallowed() == 1
    assert refserver.stats()["stateless_swallowed"] == 1
    refserver.reset_stats()
    assert refserver.stateless_swallowed() == 0


def test_a_swallowed_line_is_the_header_of_the_lines_after_it(refserver) -> None:
    from tests.refserver.helpers import enroll

    agent = enroll(refserver.url)
    lines = [_header(), _data("lost", module="audit", collector="auditd"), _data("next")]
    assert agent.post("stateless", lines).status_code == 204
    [event] = refserver.events(agent=agent.id)
    assert (event["module"], event["collector"]) == ("audit", "auditd")
    assert event["data"]["event"]["original"] == "next"
    assert refserver.stateless_swallowed() == 1


def test_module_and_collector_that_are_not_both_strings_keep_a_line_data(
    shared_server, agent
) -> None:
    lines = [
        _header(),
        _data("a", module=1, collector="c"),
        _header(),
        _data("b", module="m"),
    ]
    assert agent.post("stateless", lines).status_code == 204
    assert shared_server.count_events(agent=agent.id) == 2


# -- stateful ----------------------------------------------------------------------------------
def test_stateful_results_one_per_event_in_order(shared_server, agent) -> None:
    p1, f1, s1, gone = (f"{name}-{agent.id}" for name in ("p1", "f1", "s1", "gone"))
    lines = [
        stateful_header(p1, "inventory", "packages", "create"),
        dumps({"package": {"name": "bash", "version": "5.1"}}),
        stateful_header(p1, "inventory", "packages", "update"),
        dumps({"package": {"version": "5.2"}}),
        stateful_header(f1, "fim", "file", "create"),
        valid_data("fim"),
        stateful_header(p1, "inventory", "packages", "delete"),  # no data line follows
        stateful_header(s1, "sca", "policy", "create"),
        valid_data("sca"),
        stateful_header(gone, "fim", "file", "delete"),
    ]
    r = agent.post("stateful", lines)
    assert r.status_code == 200
    packages, fim = "wazuh-states-inventory-packages", "wazuh-states-fim"
    assert r.json() == {
        "results": [
            {"index": packages, "id": p1, "result": "created", "status": 201},
            {"index": packages, "id": p1, "result": "updated", "status": 200},
            {"index": fim, "id": f1, "result": "created", "status": 201},
            {"index": packages, "id": p1, "result": "deleted", "status": 200},
            {"index": "wazuh-states-sca", "id": s1, "result": "created", "status": 201},
            # an item can fail on its own: deleting a document that is not there
            {"index": fim, "id": gone, "result": "not_found", "status": 404},
        ]
    }
    events = shared_server.events(agent=agent.id)
    assert [e["operation"] for e in events] == [
        "create",
        "update",
        "create",
        "delete",
        "create",
        "delete",
    ]
    assert events[3]["data"] is None and events[3]["id"] == p1


@pytest.mark.parametrize(
    "collector", ["hardware", "hotfixes", "packages", "networks", "system", "ports", "processes"]
)
def test_every_inventory_collector_is_accepted(agent, collector) -> None:
    doc = f"d-{agent.id}"
    lines = [
        stateful_header(doc, "inventory", collector, "create"),
        valid_data("inventory", collector),
    ]
    r = agent.post("stateful", lines)
    assert r.status_code == 200
    assert r.json()["results"][0]["status"] == 201, r.json()


@pytest.mark.parametrize("module", ["fim", "inventory", "sca", "vulnerability"])
def test_every_stateful_module_is_accepted(agent, module) -> None:
    collector = "packages" if module == "inventory" else "c"
    doc = f"d-{agent.id}"
    r = agent.post(
        "stateful",
        [stateful_header(doc, module, collector, "create"), valid_data(module, collector)],
    )
    assert r.status_code == 200
    assert r.json()["results"][0]["status"] == 201, r.json()


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            [stateful_header("d", "logcollector", "file", "create"), DATA],
            "header.module input should be 'fim', 'inventory', 'sca', 'vulnerability', 'command' (line 2)",
        ),
        (
            [stateful_header("d", "inventory", "users", "create"), DATA],
            "header.collector input should be 'hardware', 'hotfixes', 'packages', 'networks',"
            " 'system', 'ports', 'processes' (line 2)",
        ),
        (
            [stateful_header("d", "fim", "file", "upsert"), DATA],
            "header.operation input should be 'create', 'update' or 'delete' (line 2)",
        ),
        (
            [dumps({"module": "fim", "collector": "f", "operation": "create"}), DATA],
            "header.id field required (line 2)",
        ),
        (
            [stateful_header("", "fim", "f", "create"), DATA],
            "header.id string should have at least 1 character (line 2)",
        ),
        (
            [dumps({"id": "d", "module": "fim", "operation": "create"}), DATA],
            "header.collector field required (line 2)",
        ),
        (
            [dumps({"id": "d", "module": "fim", "collector": "f"}), DATA],
            "header.operation field required (line 2)",
        ),
        # a delete followed by a data line: the data line is read as the next header
        (
            [stateful_header("d", "fim", "f", "delete"), DATA],
            "header.id field required (line 3)",
        ),
        ([stateful_header("d", "fim", "f", "create")], "data line missing after header (line 2)"),
        (
            [stateful_header("d", "fim", "f", "create"), "[1]"],
            "line must be a JSON object (line 3)",
        ),
        ([stateful_header("d", "fim", "f", "create"), "", DATA], "line is empty (line 3)"),
        (
            [stateful_header("c1", "command", None, "update"), dumps({"command": {}})],
            "data.command.result field required (line 3)",
        ),
        (
            [
                stateful_header("c1", "command", None, "update"),
                dumps({"command": {"result": {"code": "0", "message": "ok"}}}),
            ],
            "data.command.result.code input should be a valid integer (line 3)",
        ),
    ],
)
def test_stateful_bad_bodies_are_400_and_store_nothing(
    shared_server, agent, lines, message
) -> None:
    r = agent.post("stateful", lines)
    assert error_of(r) == (400, message, 400)
    assert shared_server.count_events(agent=agent.id) == 0


def test_a_bad_event_after_good_ones_rejects_the_whole_body(shared_server, agent) -> None:
    lines = [stateful_header("ok", "fim", "f", "create"), DATA] * 3
    lines += [stateful_header("bad", "fim", "f", "replace"), DATA]
    r = agent.post("stateful", lines)
    assert error_of(r) == (
        400,
        "header.operation input should be 'create', 'update' or 'delete' (line 8)",
        400,
    )
    assert shared_server.count_events(agent=agent.id) == 0
    assert shared_server.documents("wazuh-states-fim") == [] or all(
        d["agent_id"] != agent.id for d in shared_server.documents("wazuh-states-fim")
    )


def test_stateful_with_only_the_agent_line_is_400(agent) -> None:
    r = _raw_post(agent, "stateful", agent.metadata().encode())
    assert error_of(r) == (400, "body must contain the agent metadata, headers and events", 400)


def test_command_result_without_collector_is_stored_as_the_commands_result(
    shared_server, agent
) -> None:
    doc = shared_server.queue_command(agent_id=agent.id, name="fetch-config")
    assert agent.poll().status_code == 200
    result = dumps({"command": {"result": {"code": 0, "message": "Configuration fetched"}}})
    r = agent.post("stateful", [stateful_header(doc, "command", None, "update"), result])
    assert r.json() == {
        "results": [{"index": "wazuh-commands", "id": doc, "result": "updated", "status": 200}]
    }
    [command] = shared_server.commands(agent=agent.id)
    assert command["status"] == "done"
    assert command["result"] == {"code": 0, "message": "Configuration fetched"}
    [stored] = shared_server.command_results(doc)
    assert stored["agent_id"] == agent.id and stored["code"] == 0


def test_result_for_an_unknown_command_fails_on_its_own(shared_server, agent) -> None:
    result = dumps({"command": {"result": {"code": 1, "message": "x"}}})
    r = agent.post("stateful", [stateful_header("nope", "command", None, "update"), result])
    assert r.status_code == 200
    assert r.json()["results"][0]["status"] == 404
    assert shared_server.command_results("nope")[0]["code"] == 1


def test_documents_keep_their_last_state_across_requests(shared_server, agent) -> None:
    doc = f"pkg-{agent.id}"
    head = stateful_header(doc, "inventory", "packages", "create")
    r1 = agent.post("stateful", [head, dumps({"package": {"name": "bash", "version": "1"}})])
    r2 = agent.post(
        "stateful",
        [
            stateful_header(doc, "inventory", "packages", "update"),
            dumps({"package": {"version": "2"}}),
        ],
    )
    assert r1.json()["results"][0]["result"] == "created"
    assert r2.json()["results"][0]["result"] == "updated"
    [stored] = [
        d for d in shared_server.documents("wazuh-states-inventory-packages") if d["id"] == doc
    ]
    assert stored["data"] == {"package": {"name": "bash", "version": "2"}}
    assert stored["agent_id"] == agent.id
    r3 = agent.post("stateful", [stateful_header(doc, "inventory", "packages", "delete")])
    assert r3.json()["results"][0] == {
        "index": "wazuh-states-inventory-packages",
        "id": doc,
        "result": "deleted",
        "status": 200,
    }
    assert all(d["id"] != doc for d in shared_server.documents("wazuh-states-inventory-packages"))


@pytest.mark.timeout(60)
def test_a_body_slower_than_the_handler_limit_is_408(shared_server, agent) -> None:
    """The stateless handler gives a body 10 s (the real limit), then answers 408."""
    import socket

    head = "\n".join([agent.metadata(), stateless_pair()[0]]).encode()
    request = (
        f"POST /api/v1/events/stateless HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {agent.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(head) + 1000}\r\n\r\n"
    ).encode() + head
    with socket.create_connection(("127.0.0.1", shared_server.port), timeout=30) as sock:
        sock.sendall(request)  # ...and never the rest of the body
        started = time.monotonic()
        answer = b""
        while not answer.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert answer.endswith(b'{"message":"Request exceeded the processing time limit","code":408}')
    assert 9 < time.monotonic() - started < 20
    assert shared_server.count_events(agent=agent.id) == 0
