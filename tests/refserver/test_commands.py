"""Long-poll commands (docs/protocol.md §2, Commands) and files."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.fixtures.common import wait_for
from tests.refserver.helpers import dumps, enroll, error_of, stateful_header, stateless_pair


def test_nothing_queued_is_408_after_the_hold(refserver) -> None:
    agent = enroll(refserver.url)
    refserver.set_command_hold(0.5)
    started = time.monotonic()
    r = agent.poll()
    took = time.monotonic() - started
    assert error_of(r) == (408, "Request exceeded the processing time limit", 408)
    assert 0.4 < took < 5


def test_queued_command_comes_at_once_in_the_real_shape(shared_server, agent) -> None:
    doc = shared_server.queue_command(
        agent_id=agent.id, name="set-group", args={"groups": ["g1", "g2"]}, timeout=100
    )
    started = time.monotonic()
    r = agent.poll()
    assert time.monotonic() - started < 0.5
    assert r.status_code == 200
    [command] = r.json()["commands"]
    assert list(command) == [
        "document_id",
        "request_id",
        "order_id",
        "source",
        "user",
        "target",
        "action",
        "timeout",
        "status",
    ]
    assert command["document_id"] == doc
    assert command["source"] == "Users/Services" and command["user"] == "Management API"
    assert command["target"] == {"id": agent.id, "type": "agent"}
    assert command["action"] == {
        "name": "set-group",
        "version": "5.0.0",
        "args": {"groups": ["g1", "g2"]},
    }
    assert command["timeout"] == 100 and command["status"] == "sent"


def test_null_fields_are_omitted(shared_server, agent) -> None:
    shared_server.queue_command(agent_id=agent.id, name="fetch-config")
    [command] = agent.poll().json()["commands"]
    assert "timeout" not in command
    assert command["action"] == {"name": "fetch-config", "version": "5.0.0"}


def test_poll_returns_promptly_when_a_command_is_queued_mid_poll(shared_server, agent) -> None:
    shared_server.set_command_hold(30)
    try:
        answer: list[requests.Response] = []
        poller = threading.Thread(target=lambda: answer.append(agent.poll()))
        poller.start()
        wait_for(lambda: shared_server.admin.health()["waiting_polls"] >= 1)
        queued_at = time.monotonic()
        doc = shared_server.queue_command(agent_id=agent.id, name="restart")
        poller.join(10)
        released_after = time.monotonic() - queued_at
        assert answer and answer[0].status_code == 200
        assert answer[0].json()["commands"][0]["document_id"] == doc
        assert released_after < 0.5
    finally:
        shared_server.set_command_hold(1.0)


def test_several_commands_come_in_queue_order_and_only_once(shared_server, agent) -> None:
    ids = [shared_server.queue_command(agent_id=agent.id, name=f"c{i}") for i in range(3)]
    r = agent.poll()
    assert [c["document_id"] for c in r.json()["commands"]] == ids
    assert agent.poll().status_code == 408  # delivered once: the next poll waits
    assert {c["status"] for c in shared_server.commands(agent=agent.id)} == {"sent"}


def test_resend_delivers_the_same_document_id_again(shared_server, agent) -> None:
    doc = shared_server.queue_command(agent_id=agent.id, name="fetch-config")
    assert agent.poll().json()["commands"][0]["document_id"] == doc
    shared_server.resend(doc)
    assert agent.poll().json()["commands"][0]["document_id"] == doc
    [command] = shared_server.commands(agent=agent.id)
    assert command["deliveries"] == 2


def test_commands_for_another_agent_are_not_delivered(shared_server, agent) -> None:
    other = enroll(shared_server.url)
    shared_server.queue_command(agent_id=other.id, name="restart")
    assert agent.poll().status_code == 408
    assert other.poll().status_code == 200


def test_group_command_reaches_every_agent_of_the_group(shared_server) -> None:
    web = [enroll(shared_server.url, groups=("web",)) for _ in range(2)]
    db = enroll(shared_server.url, groups=("db",))
    for a in [*web, db]:  # groups come from each agent's metadata line
        assert a.post("stateless", stateless_pair()).status_code == 204
    ids = shared_server.queue_command(group="web", name="fetch-config")
    assert len(ids) == 2 and len(set(ids)) == 2
    got = {a.id: a.poll().json()["commands"][0]["document_id"] for a in web}
    assert set(got.values()) == set(ids)
    assert db.poll().status_code == 408


def test_queue_for_unknown_agent_or_empty_group_is_refused(shared_server) -> None:
    with pytest.raises(Exception, match="does not exist"):
        shared_server.queue_command(agent_id="nobody", name="restart")
    with pytest.raises(Exception, match="No agent in group"):
        shared_server.queue_command(group="nobody", name="restart")


def test_in_progress_then_done(shared_server, agent) -> None:
    doc = shared_server.queue_command(agent_id=agent.id, name="restart")
    agent.poll()

    def report(code: int, message: str) -> None:
        data = dumps({"command": {"result": {"code": code, "message": message}}})
        r = agent.post("stateful", [stateful_header(doc, "command", None, "update"), data])
        assert r.status_code == 200

    report(2, "Restarting")
    assert shared_server.commands(agent=agent.id)[0]["status"] == "in_progress"
    report(0, "Agent restarted")
    [command] = shared_server.commands(agent=agent.id)
    assert command["status"] == "done" and command["result"]["code"] == 0
    assert [r["code"] for r in shared_server.command_results(doc)] == [2, 0]


def test_a_poll_abandoned_by_its_client_does_not_swallow_commands(shared_server, agent) -> None:
    shared_server.set_command_hold(30)
    try:
        with pytest.raises(requests.ReadTimeout):
            agent.poll(timeout=0.3)
        wait_for(lambda: shared_server.admin.health()["waiting_polls"] == 0)
        doc = shared_server.queue_command(agent_id=agent.id, name="fetch-config")
        assert agent.poll().json()["commands"][0]["document_id"] == doc
    finally:
        shared_server.set_command_hold(1.0)


@pytest.mark.timeout(60)
def test_many_agents_wait_at_once_and_all_get_their_command(refserver) -> None:
    refserver.set_command_hold(30)
    agents = [enroll(refserver.url) for _ in range(20)]
    answers: dict[str, requests.Response] = {}

    def poll(a) -> None:
        answers[a.id] = a.poll()

    threads = [threading.Thread(target=poll, args=(a,)) for a in agents]
    for t in threads:
        t.start()
    wait_for(lambda: refserver.admin.health()["waiting_polls"] == 20)
    ids = {a.id: refserver.queue_command(agent_id=a.id, name="fetch-config") for a in agents}
    for t in threads:
        t.join(10)
    assert {a: r.json()["commands"][0]["document_id"] for a, r in answers.items()} == ids


def test_restart_keeps_agents_and_queued_commands(refserver) -> None:
    agent = enroll(refserver.url)
    pending = refserver.queue_command(agent_id=agent.id, name="set-group", args={"groups": ["a"]})
    refserver.kill()  # even without a clean shutdown
    refserver.start()
    assert [a["id"] for a in refserver.agents()] == [agent.id]
    r = agent.poll()
    assert r.json()["commands"][0]["document_id"] == pending
    assert r.json()["commands"][0]["action"]["args"] == {"groups": ["a"]}


# -- files -------------------------------------------------------------------------------------
def _file(agent, name: str | None) -> requests.Response:
    params = {} if name is None else {"file_name": name}
    return requests.get(
        f"{agent.url}/api/v1/files", params=params, headers=agent.headers(), timeout=10
    )


def test_files_are_served_from_the_data_dir(shared_server, agent) -> None:
    shared_server.put_file("web.yml", b"agent:\n  labels: [web]\n")
    r = _file(agent, "web.yml")
    assert r.status_code == 200 and r.content == b"agent:\n  labels: [web]\n"
    assert (shared_server.data_dir / "files" / "web.yml").exists()


def test_missing_file_is_404(agent) -> None:
    assert error_of(_file(agent, "nope.yml")) == (404, "File does not exist", 404)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../server.db", (400, "Invalid file name, it must not contain directories", 2705)),
        ("a/b.yml", (400, "Invalid file name, it must not contain directories", 2705)),
        ("..", (400, "Invalid file name, it must not be a directory", 2704)),
        (None, (400, "query.file_name field required", 400)),
    ],
)
def test_bad_file_names_are_400(agent, name, expected) -> None:
    assert error_of(_file(agent, name)) == expected


def test_files_need_a_token(shared_server) -> None:
    r = requests.get(f"{shared_server.url}/api/v1/files?file_name=x.yml", timeout=10)
    assert error_of(r) == (403, "Not authenticated", 403)
