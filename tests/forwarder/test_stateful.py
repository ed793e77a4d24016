"""Stateful delivery against the real reference server, which applies the 6.0.0 rules:
strict index mappings (refused at the bus first), the indexer's 409/404 per item, and a
stateful parser that can work per receive chunk (``--stateful-chunk``)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from bus.client import Ingest
from core.config import Config
from core.service import endpoints_from_config
from tests.fixtures.agent import EnrolledAgent
from tests.fixtures.common import wait_for
from tests.fixtures.forwarder import ForwarderProcess, ForwarderThread
from tests.fixtures.refserver import RefServer
from tests.forwarder.helpers import FAST, package, package_document, stateless

STATEFUL_PATH = "/api/v1/events/stateful"
PACKAGES = "wazuh-states-inventory-packages"


def send_all(config: Config, events: list[dict[str, Any]], per_request: int = 200) -> None:
    with Ingest(endpoints_from_config(config).ingest) as ingest:
        for start in range(0, len(events), per_request):
            result = ingest.send(events[start : start + per_request])
            assert result.ok, result


def documents(server: RefServer) -> dict[str, dict[str, Any]]:
    """The packages documents the server holds, by id, without the agent part."""
    out = {}
    for doc in server.documents(PACKAGES):
        data = dict(doc["data"])
        data.pop("agent", None)
        out[doc["id"]] = data
    return out


# -- refusals at the bus ------------------------------------------------------------------

#: (event, what the message must say)
REFUSED: list[tuple[dict[str, Any], list[str]]] = [
    (
        {"module": "app", "collector": "c", "data": {"module": "x", "collector": "y", "n": 1}},
        ["header", "lose the event"],
    ),
    (
        {**package(1), "data": {"package": {"name": "p", "nope": True}}},
        ["data.package.nope", PACKAGES, "strict_dynamic_mapping_exception"],
    ),
    ({**package(2, "update"), "data": {}}, ["must not be empty"]),
]


def test_events_the_server_would_lose_or_refuse_are_refused_at_the_bus(
    enroll_agent: Callable[..., EnrolledAgent],
    run_forwarder: Callable[[Config], ForwarderThread],
) -> None:
    agent = enroll_agent(sections={"forwarder": FAST})
    fw = run_forwarder(agent.config)
    batch = [stateless(1), *(event for event, _ in REFUSED), package(3)]
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoints_from_config(agent.config).ingest)
    try:
        dealer.send(msgpack.packb(batch, use_bin_type=True))
        assert dealer.poll(5000), "no reply"
        reply = msgpack.unpackb(dealer.recv(), raw=False)
    finally:
        dealer.close(linger=0)
        context.term()
    assert reply["ok"] is False and reply["accepted"] == 2 and reply["error"] == "rejected"
    assert [r["index"] for r in reply["rejected"]] == [1, 2, 3]
    for refusal, (_event, words) in zip(reply["rejected"], REFUSED, strict=True):
        assert refusal["reason"] == "bad_value"
        for word in words:
            assert word in refusal["message"], refusal["message"]

    # the fast path refuses the same, counted by reason
    with zmq.Context() as ctx, ctx.socket(zmq.PUSH) as push:
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(endpoints_from_config(agent.config).events)
        push.send(msgpack.packb(batch, use_bin_type=True))
    wait_for(lambda: fw.status()["rejected"].get("bad_value") == 2 * len(REFUSED))
    agent.server.wait_for_events(2, module="logcollector")
    agent.server.wait_for_events(1, module="inventory")
    status = fw.status()
    assert status["rejected"] == {"bad_value": 2 * len(REFUSED)}
    wait_for(lambda: fw.status()["queue_events"] == 0)
    assert fw.status()["quarantined"] == 0
    assert set(documents(agent.server)) == {package(3)["id"]}


def test_check_documents_off_leaves_the_document_to_the_server(
    enroll_agent: Callable[..., EnrolledAgent],
    run_forwarder: Callable[[Config], ForwarderThread],
) -> None:
    agent = enroll_agent(sections={"forwarder": {**FAST, "check_documents": False}})
    fw = run_forwarder(agent.config)
    bad = {**package(1), "data": {"package": {"name": "p", "nope": True}}}
    send_all(agent.config, [bad, package(2)])
    # the strict index refuses the item: quarantined with the indexer's reason
    wait_for(lambda: fw.status()["quarantined"] == 1 and fw.status()["queue_events"] == 0)
    [entry] = fw.service.quarantine.entries()  # type: ignore[union-attr]
    assert entry["status"] == 400 and "strict_dynamic_mapping_exception" in entry["message"]
    assert set(documents(agent.server)) == {package(2)["id"]}


# -- request size: the 6.0.0 per-chunk parser ----------------------------------------------


def deliver_backlog(
    refserver_factory: Callable[..., RefServer],
    enroll_agent: Callable[..., EnrolledAgent],
    run_forwarder: Callable[[Config], ForwarderThread],
    limit: str,
    n: int = 1000,
) -> tuple[RefServer, dict[str, Any]]:
    """N package documents queued while the server is away, then delivered to a server
    that parses stateful requests per 16 KiB piece; returns it and the forwarder status."""
    server = refserver_factory(extra_args=["--stateful-chunk", "16384"])
    agent = enroll_agent(
        server=server, sections={"forwarder": {**FAST, "stateful_batch_max_bytes": limit}}
    )
    server.stop()
    fw = run_forwarder(agent.config)
    send_all(agent.config, [package(i) for i in range(n)])
    assert fw.status()["queues"]["stateful"]["events"] == n
    server.start()
    wait_for(lambda: fw.status()["queue_events"] == 0, timeout=60)
    return server, fw.status()


@pytest.mark.timeout(120)
def test_a_stateful_backlog_goes_through_a_per_chunk_parser_in_15kb_requests(
    refserver_factory: Callable[..., RefServer],
    enroll_agent: Callable[..., EnrolledAgent],
    run_forwarder: Callable[[Config], ForwarderThread],
) -> None:
    server, status = deliver_backlog(refserver_factory, enroll_agent, run_forwarder, "15KB")
    assert server.request_count(path=STATEFUL_PATH, status=400) == 0
    assert status["quarantined"] == 0
    assert server.request_count(path=STATEFUL_PATH, status=200) >= 1000 * 400 // (15 * 1024)
    held = documents(server)
    assert len(held) == 1000
    assert all(held[package(i)["id"]] == package_document(i) for i in range(1000))


@pytest.mark.timeout(120)
def test_the_same_backlog_in_1mb_requests_is_refused_by_the_per_chunk_parser(
    refserver_factory: Callable[..., RefServer],
    enroll_agent: Callable[..., EnrolledAgent],
    run_forwarder: Callable[[Config], ForwarderThread],
) -> None:
    # the check above can fail: with the old bound the server refuses whole requests (the
    # forwarder then bisects them down to pieces that fit)
    server, _status = deliver_backlog(refserver_factory, enroll_agent, run_forwarder, "1MB")
    assert server.request_count(path=STATEFUL_PATH, status=400) > 0


# -- per-item answers ------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_creates_sent_again_after_a_kill_9_are_already_created_not_quarantined(
    enrolled_agent: EnrolledAgent,
    forwarder_process: Callable[..., ForwarderProcess],
) -> None:
    config, _creds, server = enrolled_agent
    options = {"batch_interval": "50ms", "backoff_initial": "50ms", "backoff_max": "500ms"}
    queue = config.data_dir / "queue"
    server.stop()
    first = forwarder_process(config, **options)
    send_all(config, [package(i) for i in range(100)])
    first.kill()
    # The queue as it was on disk at the kill; it is put back after the creates were
    # delivered: the window in which a forwarder dies after the server applied a batch
    # and before the ack was committed. The restart sends those creates again.
    saved = Path(str(queue) + ".saved")
    shutil.copytree(queue, saved)
    server.start()
    second = forwarder_process(config, **options)
    wait_for(lambda: second.status()["queue_events"] == 0, timeout=30)
    assert len(documents(server)) == 100
    assert second.terminate() == 0
    shutil.rmtree(queue)
    shutil.copytree(saved, queue)

    third = forwarder_process(config, **options)
    wait_for(lambda: third.status()["queue_events"] == 0, timeout=30)
    stateful = third.status()["queues"]["stateful"]
    assert stateful["items_already_created"] == 100
    assert third.status()["quarantined"] == 0 and third.status()["quarantine_events"] == 0
    assert server.request_count(path=STATEFUL_PATH, status=200) >= 2
    held = documents(server)
    assert all(held[package(i)["id"]] == package_document(i) for i in range(100))
    assert third.terminate() == 0
