"""A real forwarder process killed with SIGKILL, or stopped with SIGTERM, loses nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from bus.client import Ingest
from bus.errors import BusError
from core.service import endpoints_from_config
from tests.fixtures.agent import EnrolledAgent
from tests.fixtures.common import wait_for
from tests.fixtures.forwarder import ForwarderProcess
from tests.forwarder.helpers import seqs, stateless

OPTIONS = {"batch_interval": "50ms", "backoff_initial": "50ms", "backoff_max": "500ms"}
#: batch size of the kill test: what can be in flight is 4 such batches
BATCH = 64 * 1024


@pytest.mark.timeout(120)
def test_kill_9_during_sending_loses_no_acknowledged_event(
    enrolled_agent: EnrolledAgent, forwarder_process: Callable[..., ForwarderProcess]
) -> None:
    config, _creds, server = enrolled_agent
    # slow answers, so requests are in flight when the process dies
    server.set_fault(delay=0.2, path="/api/v1/events")
    first = forwarder_process(config, **OPTIONS, batch_max_bytes=BATCH)
    acked: list[int] = []
    stop = threading.Event()

    def produce() -> None:
        seq = 0
        with Ingest(endpoints_from_config(config).ingest, timeout=2.0) as ingest:
            while not stop.is_set():
                batch = [stateless(i) for i in range(seq, seq + 50)]
                try:
                    result = ingest.send(batch)
                except BusError:
                    return  # the forwarder is gone: what it did not acknowledge may be lost
                if result.ok:
                    acked.extend(range(seq, seq + 50))
                seq += 50

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        server.wait_for_events(1000, module="logcollector", timeout=30)
        wait_for(lambda: first.status()["queue_events"] > 500, timeout=30)
        first.kill()
    finally:
        stop.set()
        producer.join(10)
    assert len(acked) >= 1000
    delivered_before = server.count_events(module="logcollector")

    server.clear_faults()
    second = forwarder_process(config, **OPTIONS)
    wait_for(lambda: set(seqs(server.events(module="logcollector"))) >= set(acked), timeout=60)
    got = seqs(server.events(module="logcollector"))
    duplicates = len(got) - len(set(got))
    print(f"acked {len(acked)}, delivered before the kill {delivered_before}, dups {duplicates}")
    # duplicates are only what was in flight at the kill: 4 batches of ~100-byte events
    assert duplicates <= 4 * BATCH // 100
    assert second.terminate() == 0


@pytest.mark.timeout(90)
def test_sigterm_commits_what_is_buffered_and_a_restart_sends_it(
    enrolled_agent: EnrolledAgent, forwarder_process: Callable[..., ForwarderProcess]
) -> None:
    config, _creds, server = enrolled_agent
    server.stop()  # nothing can leave: everything must wait on disk
    first = forwarder_process(config, **OPTIONS)
    with Ingest(endpoints_from_config(config).ingest) as ingest:
        for start in range(0, 1000, 100):
            assert ingest.send([stateless(i) for i in range(start, start + 100)]).ok
    assert first.status()["queue_events"] == 1000
    assert first.terminate() == 0
    server.start()
    forwarder_process(config, **OPTIONS)
    server.wait_for_events(1000, module="logcollector", timeout=30)
    assert sorted(seqs(server.events(module="logcollector"))) == list(range(1000))


@pytest.mark.timeout(90)
def test_sigterm_abandons_a_slow_request_at_the_deadline_and_resends_it(
    enrolled_agent: EnrolledAgent, forwarder_process: Callable[..., ForwarderProcess]
) -> None:
    import dataclasses
    import time

    config, _creds, server = enrolled_agent
    config = dataclasses.replace(config, agent=dataclasses.replace(config.agent, stop_timeout=1.0))
    server.set_fault(delay=30, path="/api/v1/events")  # the request hangs
    first = forwarder_process(config, **OPTIONS)
    with Ingest(endpoints_from_config(config).ingest) as ingest:
        assert ingest.send([stateless(i) for i in range(100)]).ok
    wait_for(lambda: first.status()["queues"]["stateless"]["in_flight"] == 1)
    started = time.monotonic()
    assert first.terminate() == 0
    assert time.monotonic() - started < 10  # the deadline, not the 30 s request
    server.clear_faults()
    forwarder_process(config, **OPTIONS)
    wait_for(lambda: set(seqs(server.events(module="logcollector"))) >= set(range(100)), 30)
