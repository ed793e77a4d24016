"""End to end over real sockets and real HTTP: collector → forwarder → reference server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bus.client import Ingest, Publisher
from core.config import Config
from core.service import endpoints_from_config
from tests.fixtures.agent import EnrolledAgent
from tests.fixtures.common import wait_for
from tests.fixtures.forwarder import ForwarderThread
from tests.forwarder.helpers import FAST, seqs, stateless


@pytest.fixture
def agent(enroll_agent: Callable[..., EnrolledAgent]) -> EnrolledAgent:
    return enroll_agent(sections={"forwarder": FAST})


def test_fast_path_events_arrive_exactly(
    agent: EnrolledAgent, run_forwarder: Callable[[Config], ForwarderThread]
) -> None:
    fw = run_forwarder(agent.config)
    with Publisher(endpoints_from_config(agent.config).events) as pub:
        for start in range(0, 2000, 100):
            pub.send_batch([stateless(i) for i in range(start, start + 100)])
        pub.send_event(stateless(2000))
    agent.server.wait_for_events(2001, module="logcollector", timeout=20)
    got = agent.server.events(module="logcollector")
    assert sorted(seqs(got)) == list(range(2001))
    assert all(e["collector"] == "file" for e in got)
    wait_for(lambda: fw.status()["acked"] == 2001)
    status = fw.status()
    assert status["received"] == 2001
    assert status["persisted"] == 2001
    assert status["queue_events"] == 0
    assert status["requests"]["204"] >= 1
    assert status["quarantine_events"] == 0


def test_acknowledged_path_commits_before_reply(
    agent: EnrolledAgent, run_forwarder: Callable[[Config], ForwarderThread]
) -> None:
    fw = run_forwarder(agent.config)
    with Ingest(endpoints_from_config(agent.config).ingest) as ingest:
        result = ingest.send([stateless(i) for i in range(10)])
        # the reply came after the commit: the events are counted as persisted already
        assert fw.status()["persisted"] == 10
    assert result.ok and result.accepted == 10
    agent.server.wait_for_events(10, module="logcollector")


def test_a_req_client_gets_its_reply_with_the_delimiter(
    agent: EnrolledAgent, run_forwarder: Callable[[Config], ForwarderThread]
) -> None:
    import msgpack
    import zmq

    run_forwarder(agent.config)
    ctx = zmq.Context.instance()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(endpoints_from_config(agent.config).ingest)
    try:
        req.send(msgpack.packb([stateless(1), stateless(2)]))
        assert req.poll(5000)
        assert msgpack.unpackb(req.recv()) == {"ok": True, "accepted": 2}
    finally:
        req.close()


def test_stateful_events_keep_their_order(
    agent: EnrolledAgent, run_forwarder: Callable[[Config], ForwarderThread]
) -> None:
    run_forwarder(agent.config)
    events: list[dict[str, Any]] = []
    for i in range(300):
        # a valid life for the document: made, changed, deleted, made again, ...
        op = "create" if i % 50 == 0 else ("delete" if i % 50 == 49 else "update")
        ev: dict[str, Any] = {
            "module": "fim",
            "collector": "file",
            "type": "stateful",
            "id": "doc-1",
            "operation": op,
        }
        if op != "delete":
            ev["data"] = {"file": {"path": "/etc/x", "size": i}}
        events.append(ev)
    with Publisher(endpoints_from_config(agent.config).events) as pub:
        for ev in events:
            pub.send_event(ev)
    agent.server.wait_for_events(300, module="fim", timeout=20)
    got = agent.server.events(module="fim")
    assert [e["operation"] for e in got] == [e["operation"] for e in events]
    assert [e["data"]["file"]["size"] for e in got if e["data"]] == [
        e["data"]["file"]["size"] for e in events if "data" in e
    ]


def test_events_wait_on_disk_until_the_agent_is_enrolled(
    make_config: Callable[..., Config], run_forwarder: Callable[[Config], ForwarderThread]
) -> None:
    config = make_config({"forwarder": FAST})
    fw = run_forwarder(config)
    with Ingest(endpoints_from_config(config).ingest) as ingest:
        assert ingest.send([stateless(i) for i in range(5)]).ok
    wait_for(lambda: "register" in str(fw.status().get("last_error") or ""))
    status = fw.status()
    assert status["queue_events"] == 5
    assert status["acked"] == 0
