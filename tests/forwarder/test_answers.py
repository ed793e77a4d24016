"""How the forwarder acts on every kind of server answer (real HTTP, reference server)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from bus.client import Ingest
from core.config import Config
from core.service import endpoints_from_config
from tests.fixtures.agent import EnrolledAgent
from tests.fixtures.common import wait_for
from tests.fixtures.forwarder import ForwarderThread
from tests.forwarder.helpers import FAST, command_result, fim, seqs, stateless

STATELESS_PATH = "/api/v1/events/stateless"


def send_all(config: Config, events: list, per_request: int = 200) -> None:
    with Ingest(endpoints_from_config(config).ingest) as ingest:
        for start in range(0, len(events), per_request):
            result = ingest.send(events[start : start + per_request])
            assert result.ok, result


@pytest.mark.timeout(90)
def test_outage_then_recovery_delivers_everything_with_bounded_requests(
    enroll_agent: Callable[..., EnrolledAgent],
    run_forwarder: Callable[[Config], ForwarderThread],
) -> None:
    agent = enroll_agent(sections={"forwarder": {**FAST, "backoff_max": "400ms"}})
    fw = run_forwarder(agent.config)
    send_all(agent.config, [stateless(i) for i in range(500)])
    agent.server.wait_for_events(500, module="logcollector")

    agent.server.stop()
    down_at = time.monotonic()
    send_all(agent.config, [stateless(i) for i in range(500, 1500)])
    # let the senders fail for a while: at least 3 s and 6 failed attempts in a row
    wait_for(
        lambda: (
            time.monotonic() - down_at > 3
            and fw.status()["queues"]["stateless"]["backoff_attempts"] >= 6
        ),
        timeout=30,
    )
    status = fw.status()
    outage = time.monotonic() - down_at
    failed_requests = status["requests_error"]
    assert status["queue_events"] == 1000
    agent.server.start()
    agent.server.wait_for_events(1500, module="logcollector", timeout=30)

    # Every event arrived; resends may duplicate what was in flight, never lose anything.
    assert set(seqs(agent.server.events(module="logcollector"))) == set(range(1500))
    # Bounded by the back-off: one probe at a time, full jitter under a 0.4 s ceiling
    # (mean 0.2 s); 4 senders without back-off would make thousands of attempts.
    print("outage", outage, "failed requests", failed_requests)
    assert failed_requests <= 8 + outage / 0.2 * 2, (failed_requests, outage)
    wait_for(lambda: fw.status()["queue_events"] == 0)
    assert fw.status()["backoff"] == 0


def test_server_errors_and_retry_after_are_retried_until_delivered(
    enroll_agent: Callable[..., EnrolledAgent],
    run_forwarder: Callable[[Config], ForwarderThread],
) -> None:
    agent = enroll_agent(sections={"forwarder": FAST})
    agent.server.set_fault(status=503, count=2, retry_after=1, path=STATELESS_PATH)
    agent.server.set_fault(status=429, count=1, path=STATELESS_PATH)
    fw = run_forwarder(agent.config)
    started = time.monotonic()
    send_all(agent.config, [stateless(i) for i in range(100)])
    agent.server.wait_for_events(100, module="logcollector", timeout=20)
    # two 503s asking for 1 s each: Retry-After was honoured
    assert time.monotonic() - started >= 2.0
    status = fw.status()
    assert status["requests_503"] == 2 and status["requests_429"] == 1
    assert status["retried"] == 3
    assert sorted(seqs(agent.server.events(module="logcollector"))) == list(range(100))


@pytest.mark.timeout(60)
def test_token_revoked_mid_stream_loses_nothing(
    enroll_agent: Callable[..., EnrolledAgent],
    run_forwarder: Callable[[Config], ForwarderThread],
) -> None:
    agent = enroll_agent(sections={"forwarder": FAST})
    run_forwarder(agent.config)
    auth_before = agent.server.auth_count()
    with Ingest(endpoints_from_config(agent.config).ingest) as ingest:
        for start in range(0, 3000, 100):
            assert ingest.send([stateless(i) for i in range(start, start + 100)]).ok
            if start == 1500:
                agent.server.wait_for_events(1000, module="logcollector")
                agent.server.revoke_tokens()
    agent.server.wait_for_events(3000, module="logcollector", timeout=30)
    assert set(seqs(agent.server.events(module="logcollector"))) == set(range(3000))
    assert agent.server.request_count(path=STATELESS_PATH, status=403) >= 1
    assert agent.server.auth_count() > auth_before


def test_413_splits_the_batch_and_a_lone_oversized_event_is_quarantined(
    enroll_agent: Callable[..., EnrolledAgent],
    run_forwarder: Callable[[Config], ForwarderThread],
) -> None:
    agent = enroll_agent(sections={"forwarder": {**FAST, "batch_interval": "300ms"}})
    agent.server.set_fault(max_body=20_000, path=STATELESS_PATH)
    fw = run_forwarder(agent.config)
    events = [stateless(i) for i in range(2000)]
    events.insert(1000, stateless(99999, pad=30_000))  # alone it is still over 20 KB
    send_all(agent.config, events, per_request=500)
    agent.server.wait_for_events(2000, module="logcollector", timeout=30)
    wait_for(lambda: fw.status()["quarantined"] == 1 and fw.status()["queue_events"] == 0)
    got = seqs(agent.server.events(module="logcollector"))
    assert sorted(got) == list(range(2000))
    status = fw.status()
    assert status["requests_413"] >= 1
    assert status["queues"]["stateless"]["splits"] >= 1
    [entry] = fw.service.quarantine.entries()  # type: ignore[union-attr]
    assert entry["status"] == 413 and '"seq":99999' in entry["event"]


def test_poison_event_is_quarantined_and_the_rest_delivered(
    enroll_agent: Callable[..., EnrolledAgent],
    run_forwarder: Callable[[Config], ForwarderThread],
) -> None:
    agent = enroll_agent(sections={"forwarder": {**FAST, "batch_interval": "300ms"}})
    fw = run_forwarder(agent.config)
    events = [fim(i, "create") for i in range(3000)]
    # A command result without its result: the bus envelope is fine, the server says 400.
    poison = {
        "module": "command",
        "type": "stateful",
        "id": "cmd-1",
        "operation": "update",
        "data": {"command": {}},
    }
    events.insert(1234, poison)
    send_all(agent.config, events, per_request=1000)
    agent.server.wait_for_events(3000, module="fim", timeout=30)
    wait_for(lambda: fw.status()["quarantined"] == 1 and fw.status()["queue_events"] == 0)
    got = agent.server.events(module="fim")
    assert seqs(got) == list(range(3000))  # all delivered, in order
    assert agent.server.count_events(module="command") == 0
    [entry] = fw.service.quarantine.entries()  # type: ignore[union-attr]
    assert entry["status"] == 400
    assert "data.command.result field required" in entry["message"]
    assert '"id":"cmd-1"' in entry["event"]
    assert fw.status()["requests_400"] >= 2  # bisected


def test_stateful_item_answers_delivered_state_and_refused_command_results(
    enroll_agent: Callable[..., EnrolledAgent],
    run_forwarder: Callable[[Config], ForwarderThread],
) -> None:
    agent = enroll_agent(sections={"forwarder": FAST})
    fw = run_forwarder(agent.config)
    # deleting a document the server never had: item 404, the state the agent wants
    # already; a result for a command the server does not have: item 404, a failure
    send_all(
        agent.config,
        [fim(1, "create"), fim(2, "delete", doc="nope"), command_result("cmd-x"), fim(3, "create")],
    )
    agent.server.wait_for_events(3, module="fim")
    wait_for(lambda: fw.status()["quarantined"] == 1 and fw.status()["queue_events"] == 0)
    [entry] = fw.service.quarantine.entries()  # type: ignore[union-attr]
    assert entry["status"] == 404 and '"id":"cmd-x"' in entry["event"]
    assert "no command 'cmd-x'" in entry["message"]
    stateful = fw.status()["queues"]["stateful"]
    assert stateful["item_failures"] == 1
    assert stateful["items_already_deleted"] == 1
