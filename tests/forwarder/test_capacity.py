"""The byte limit of a queue: drop_oldest drops (and counts), block pushes back."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bus.client import Ingest, Publisher
from bus.errors import BusTimeout
from core.config import Config
from core.service import endpoints_from_config
from tests.fixtures.agent import EnrolledAgent
from tests.fixtures.common import wait_for
from tests.fixtures.forwarder import ForwarderThread
from tests.forwarder.helpers import FAST, seqs, stateless

LIMIT = 64 * 1024


@pytest.mark.timeout(90)
def test_drop_oldest_keeps_the_newest_and_counts_every_drop(
    enroll_agent: Callable[..., EnrolledAgent],
    run_forwarder: Callable[[Config], ForwarderThread],
) -> None:
    agent = enroll_agent(
        sections={
            "forwarder": {
                **FAST,
                "max_queue_bytes": LIMIT,
                "when_full": "drop_oldest",
                "chunk_max_bytes": "8KB",
            }
        }
    )
    agent.server.stop()
    fw = run_forwarder(agent.config)
    with Publisher(endpoints_from_config(agent.config).events) as pub:
        for start in range(0, 2000, 20):
            pub.send_batch([stateless(i, pad=100) for i in range(start, start + 20)])
        # keep the socket open until everything is handed over (closing drops what is
        # still in the publisher's buffer after its linger)
        wait_for(lambda: fw.status()["persisted"] == 2000, timeout=20)
    status = fw.status()
    dropped = status["dropped"]
    assert dropped > 1000  # 2000 events of ~150 bytes do not fit in 64 KB
    assert status["queues"]["stateless"]["bytes"] <= LIMIT
    assert status["queues"]["stateless"]["events"] == 2000 - dropped

    agent.server.start()
    wait_for(lambda: fw.status()["queue_events"] == 0, timeout=30)
    delivered = set(seqs(agent.server.events(module="logcollector")))
    assert len(delivered) == 2000 - dropped  # every event is either delivered or counted
    assert set(range(1800, 2000)) <= delivered  # the newest were kept


@pytest.mark.timeout(90)
def test_block_answers_full_and_pushes_back_without_losing_anything(
    enroll_agent: Callable[..., EnrolledAgent],
    run_forwarder: Callable[[Config], ForwarderThread],
) -> None:
    agent = enroll_agent(
        sections={
            "forwarder": {**FAST, "max_queue_bytes": LIMIT, "chunk_max_bytes": "8KB"},
            "bus": {"hwm": 10},
        }
    )
    agent.server.stop()
    fw = run_forwarder(agent.config)
    eps = endpoints_from_config(agent.config)
    accepted: list[int] = []
    seq = 0
    with Ingest(eps.ingest) as ingest:
        while True:
            batch = [stateless(i, pad=100) for i in range(seq, seq + 50)]
            result = ingest.send(batch)
            if result.error == "full":
                break
            assert result.ok
            accepted.extend(range(seq, seq + 50))
            seq += 50
            assert seq < 10_000, "the queue never filled"
    assert fw.status()["ingest_full"] == 1
    assert fw.status()["queues"]["stateless"]["bytes"] <= LIMIT

    pushed: list[int] = []
    seq = 100_000
    with Publisher(eps.events, send_timeout=0.5) as pub:
        with pytest.raises(BusTimeout):
            while seq < 1_000_000:
                pub.send_event(stateless(seq, pad=100))
                pushed.append(seq)
                seq += 1
        assert fw.status()["blocked"] is True
        assert fw.status()["dropped"] == 0

        agent.server.start()
        expected = set(accepted) | set(pushed)
        agent.server.wait_for_events(len(expected), module="logcollector", timeout=60)
    assert set(seqs(agent.server.events(module="logcollector"))) == expected
    assert fw.status()["dropped"] == 0


def test_max_eps_slows_the_intake_without_losing_anything(
    enroll_agent: Callable[..., EnrolledAgent],
    run_forwarder: Callable[[Config], ForwarderThread],
) -> None:
    import time

    agent = enroll_agent(sections={"forwarder": {**FAST, "max_eps": 500}})
    fw = run_forwarder(agent.config)
    started = time.monotonic()
    with Ingest(endpoints_from_config(agent.config).ingest) as ingest:
        for start in range(0, 1500, 100):
            assert ingest.send([stateless(i) for i in range(start, start + 100)]).ok
    elapsed = time.monotonic() - started
    # a burst of one second's worth, then 500 events/s: 1,500 events take about 2 s
    assert elapsed >= 1.5, elapsed
    agent.server.wait_for_events(1500, module="logcollector")
    assert fw.status()["received"] == 1500
