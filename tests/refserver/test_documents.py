"""Stateful documents as the indexer treats them (docs/protocol.md §2, Events): strict
mappings, create/update/delete semantics, and the flags that relax them."""

from __future__ import annotations

import pytest

from tests.refserver.helpers import Agent, dumps, enroll, stateful_header, valid_data

PACKAGES = "wazuh-states-inventory-packages"


def _doc(agent: Agent, name: str) -> str:
    return f"{name}-{agent.id}"


def _stored(server, agent: Agent, index: str = PACKAGES) -> dict[str, object]:
    return {d["id"]: d["data"] for d in server.documents(index) if d["agent_id"] == agent.id}


def _pkg(doc: str, operation: str, data: object | None = None) -> list[str]:
    head = stateful_header(doc, "inventory", "packages", operation)
    return [head] if data is None else [head, dumps(data)]


# -- the mapping check ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "result"),
    [
        (
            {"package": {"name": "bash", "colour": "red"}},
            "strict_dynamic_mapping_exception: mapping set to strict, dynamic introduction of"
            " [colour] within [package] is not allowed",
        ),
        (
            {"pkg": 1},
            "strict_dynamic_mapping_exception: mapping set to strict, dynamic introduction of"
            " [pkg] within [_doc] is not allowed",
        ),
        ({"package": {"size": "big"}}, "mapper_parsing_exception: failed to parse field"),
        ({"package": {"name": {"x": 1}}}, "mapper_parsing_exception: failed to parse field"),
        ({"package": "bash"}, "mapper_parsing_exception: object mapping for [package]"),
        ({}, "mapper_parsing_exception: failed to parse: the document's data is empty"),
        ({"agent": {"id": "x"}}, "mapper_parsing_exception: Duplicate field 'agent'"),
    ],
)
def test_a_document_the_mapping_refuses_fails_its_item_alone(
    shared_server, agent, data, result
) -> None:
    bad, good = _doc(agent, "bad"), _doc(agent, "good")
    lines = [
        *_pkg(bad, "create", data),
        *_pkg(good, "create", {"package": {"name": "zsh"}}),
    ]
    r = agent.post("stateful", lines)
    assert r.status_code == 200
    first, second = r.json()["results"]
    assert first["status"] == 400 and first["index"] == PACKAGES and first["id"] == bad
    assert first["result"].startswith(result), first
    assert second == {"index": PACKAGES, "id": good, "result": "created", "status": 201}
    # the refused item is neither a document nor a received event
    assert _stored(shared_server, agent) == {good: {"package": {"name": "zsh"}}}
    assert [e["id"] for e in shared_server.events(agent=agent.id)] == [good]


def test_an_update_is_checked_too_and_an_unknown_index_still_refuses_empty_data(
    shared_server, agent
) -> None:
    doc = _doc(agent, "d")
    assert agent.post("stateful", _pkg(doc, "create", {"package": {"name": "a"}})).ok
    r = agent.post("stateful", _pkg(doc, "update", {"package": {"nope": 1}}))
    assert r.json()["results"][0]["status"] == 400
    assert _stored(shared_server, agent) == {doc: {"package": {"name": "a"}}}
    # vulnerability's mapping is not known here: any fields pass, but {} cannot splice
    vuln = [stateful_header(doc, "vulnerability", "c", "create"), dumps({})]
    assert agent.post("stateful", vuln).json()["results"][0]["status"] == 400


def test_refused_documents_are_counted(refserver) -> None:
    agent = enroll(refserver.url)
    lines = [*_pkg("a", "create", {"x": 1}), *_pkg("b", "create", {}), *_pkg("c", "delete")]
    statuses = [i["status"] for i in agent.post("stateful", lines).json()["results"]]
    assert statuses == [400, 400, 404]
    assert refserver.documents_refused() == 2
    assert refserver.stats()["documents_refused"] == 2


def test_no_strict_documents_stores_what_the_mapping_would_refuse(refserver_factory) -> None:
    server = refserver_factory(strict_documents=False)
    agent = enroll(server.url)
    lines = [*_pkg("a", "create", {"colour": "red"}), *_pkg("b", "create", {})]
    results = agent.post("stateful", lines).json()["results"]
    assert [i["status"] for i in results] == [201, 201]
    assert _stored(server, agent) == {"a": {"colour": "red"}, "b": {}}
    assert server.documents_refused() == 0


# -- the indexer's operations -------------------------------------------------------------------
def test_create_of_an_existing_document_is_409_and_leaves_it_unchanged(
    shared_server, agent
) -> None:
    doc = _doc(agent, "p")
    first = agent.post("stateful", _pkg(doc, "create", {"package": {"name": "bash"}}))
    again = agent.post("stateful", _pkg(doc, "create", {"package": {"name": "other"}}))
    assert first.json()["results"][0]["status"] == 201
    [item] = again.json()["results"]
    assert item["status"] == 409 and item["id"] == doc and item["index"] == PACKAGES
    assert item["result"].startswith("version_conflict_engine_exception: "), item
    assert _stored(shared_server, agent) == {doc: {"package": {"name": "bash"}}}


def test_update_of_a_missing_document_is_404_and_stores_nothing(shared_server, agent) -> None:
    doc = _doc(agent, "p")
    [item] = agent.post("stateful", _pkg(doc, "update", {"package": {"name": "a"}})).json()[
        "results"
    ]
    assert item["status"] == 404
    assert item["result"] == f"document_missing_exception: [{doc}]: document missing"
    assert _stored(shared_server, agent) == {}


def test_update_merges_recursively_and_a_null_sets_null(shared_server, agent) -> None:
    doc = _doc(agent, "p")
    created = {"package": {"name": "bash", "version": "1", "size": 10, "path": "/bin/bash"}}
    agent.post("stateful", _pkg(doc, "create", created))
    update = {"package": {"version": "2", "size": None}, "@timestamp": "2026-01-02T03:04:05Z"}
    [item] = agent.post("stateful", _pkg(doc, "update", update)).json()["results"]
    assert item == {"index": PACKAGES, "id": doc, "result": "updated", "status": 200}
    assert _stored(shared_server, agent)[doc] == {
        "package": {"name": "bash", "version": "2", "size": None, "path": "/bin/bash"},
        "@timestamp": "2026-01-02T03:04:05Z",
    }
    # an update that changes nothing is the indexer's noop
    [item] = agent.post("stateful", _pkg(doc, "update", {"package": {"name": "bash"}})).json()[
        "results"
    ]
    assert item == {"index": PACKAGES, "id": doc, "result": "noop", "status": 200}


def test_a_list_is_replaced_not_merged(shared_server, agent) -> None:
    doc = _doc(agent, "proc")
    index = "wazuh-states-inventory-processes"
    head = stateful_header(doc, "inventory", "processes", "create")
    agent.post("stateful", [head, dumps({"process": {"args": ["a", "b"], "pid": 1}})])
    head = stateful_header(doc, "inventory", "processes", "update")
    agent.post("stateful", [head, dumps({"process": {"args": ["c"]}})])
    assert _stored(shared_server, agent, index)[doc] == {"process": {"args": ["c"], "pid": 1}}


def test_items_are_decided_in_order_within_one_request(shared_server, agent) -> None:
    doc = _doc(agent, "p")
    lines = [
        *_pkg(doc, "update", {"package": {"name": "a"}}),  # not there yet
        *_pkg(doc, "create", {"package": {"name": "a"}}),
        *_pkg(doc, "create", {"package": {"name": "b"}}),  # there now
        *_pkg(doc, "update", {"package": {"version": "1"}}),
        *_pkg(doc, "delete"),
        *_pkg(doc, "delete"),  # gone again
        *_pkg(doc, "create", {"package": {"name": "c"}}),
    ]
    results = agent.post("stateful", lines).json()["results"]
    assert [(i["result"].split(":")[0], i["status"]) for i in results] == [
        ("document_missing_exception", 404),
        ("created", 201),
        ("version_conflict_engine_exception", 409),
        ("updated", 200),
        ("deleted", 200),
        ("not_found", 404),
        ("created", 201),
    ]
    assert _stored(shared_server, agent) == {doc: {"package": {"name": "c"}}}


def test_upsert_documents_restores_create_or_replace(refserver_factory) -> None:
    server = refserver_factory(upsert_documents=True)
    agent = enroll(server.url)
    lines = [
        *_pkg("p", "update", {"package": {"name": "a", "version": "1"}}),  # missing: created
        *_pkg("p", "create", {"package": {"name": "b"}}),  # exists: replaced
        *_pkg("q", "create", {"package": {"name": "q"}}),
        *_pkg("q", "update", {"package": {"version": "2"}}),  # replaced, not merged
    ]
    results = agent.post("stateful", lines).json()["results"]
    assert [(i["result"], i["status"]) for i in results] == [
        ("created", 201),
        ("updated", 200),
        ("created", 201),
        ("updated", 200),
    ]
    assert _stored(server, agent) == {
        "p": {"package": {"name": "b"}},
        "q": {"package": {"version": "2"}},
    }
    # the mapping check still applies unless --no-strict-documents
    [item] = agent.post("stateful", _pkg("r", "create", {"x": 1})).json()["results"]
    assert item["status"] == 400


def test_command_results_keep_their_own_rules(shared_server, agent) -> None:
    doc = shared_server.queue_command(agent_id=agent.id, name="restart")
    assert agent.poll().status_code == 200
    result = dumps({"command": {"result": {"code": 0, "message": "ok"}}})
    head = stateful_header(doc, "command", None, "update")
    for _ in range(2):  # an update of a command the server owns, as often as it comes
        [item] = agent.post("stateful", [head, result]).json()["results"]
        assert item == {"index": "wazuh-commands", "id": doc, "result": "updated", "status": 200}
    # typed fields of the commands index are still checked
    bad = dumps({"command": {"result": {"code": 70000, "message": "ok"}}})
    [item] = agent.post("stateful", [head, bad]).json()["results"]
    assert item["status"] == 400 and item["result"].startswith("mapper_parsing_exception")
    assert [r["code"] for r in shared_server.command_results(doc)] == [0, 0]


def test_valid_data_of_every_index_is_accepted(shared_server, agent) -> None:
    lines: list[str] = []
    for collector in ("hardware", "hotfixes", "networks", "packages", "ports", "processes"):
        lines += [
            stateful_header(_doc(agent, collector), "inventory", collector, "create"),
            valid_data("inventory", collector),
        ]
    for module in ("fim", "sca", "vulnerability"):
        lines += [stateful_header(_doc(agent, module), module, "c", "create"), valid_data(module)]
    results = agent.post("stateful", lines).json()["results"]
    assert {i["status"] for i in results} == {201}, results
