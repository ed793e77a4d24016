"""Delivery guarantees through server trouble, over real HTTP to the reference server:
an outage (back-off bounded, nothing lost) and a token revoked mid-stream.

What the sender does with each single answer (2xx, 400, 413, 401/403, 408/429/5xx with
Retry-After, timeouts, per-item results) is tested in milliseconds against the in-memory
fake server in test_sender.py."""

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
from tests.forwarder.helpers import FAST, seqs, stateless

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
    failed_requests = status["requests"]["error"]
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
