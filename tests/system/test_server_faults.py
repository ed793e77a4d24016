"""The server goes away, revokes every token, or answers too slowly: nothing is lost.

Each test runs the real `agentbus run` against the reference server with a stream of
numbered events on the acknowledged path and commands queued on the server, inflicts one
fault, and accounts for every event and command afterwards.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.fixtures.common import wait_for
from tests.fixtures.system import (
    CommandLoad,
    EventLoad,
    commander_counters,
    elapsed,
    forwarder_counters,
    report,
    stale_documents,
    tally_commands,
    tally_events,
    wait_commands_done,
    wait_delivered,
)

pytestmark = pytest.mark.system

#: how long the server stays down: the minute of the issue (the suite stays within its
#: budget; the agent reaches its slowest retry pace, backoff_max, after a few seconds)
OUTAGE = 60.0
BACKOFF = {"backoff_initial": "500ms", "backoff_max": "4s"}


def expected_attempts(span: float, initial: float, maximum: float, low: float) -> int:
    """Requests a back-off allows in ``span`` seconds when each delay is at least ``low``
    times its ceiling (full jitter: 0, the commander's jitter: 0.5) — for full jitter the
    mean (0.5) is used, and the caller allows a margin."""
    t, n = 0.0, 0
    while t < span:
        n += 1
        t += max(low, 1e-9) * min(maximum, initial * 2 ** (n - 1))
    return n


@pytest.mark.timeout(300)
def test_server_down_for_a_while_then_back_everything_delivered(start_agent):
    agent, enrolled = start_agent(forwarder=BACKOFF, commander=BACKOFF)
    server = enrolled.server
    events = EventLoad(enrolled.config, "outage", stateful=10).start()
    commands = CommandLoad(server, enrolled.credentials.uuid, interval=0.5).start()
    events.wait_acked(1000)
    fw_before = forwarder_counters(agent)
    cmd_before = commander_counters(agent)
    server.stop()
    down_at = time.monotonic()
    # The agent notices (its senders back off) and keeps accepting events meanwhile.
    wait_for(lambda: forwarder_counters(agent)["retried"] > fw_before["retried"], timeout=15)
    acked_at_stop = events.acked_count()
    threading.Event().wait(max(0.0, OUTAGE - (time.monotonic() - down_at)))  # the outage
    fw_during = forwarder_counters(agent)
    cmd_during = commander_counters(agent)
    outage = time.monotonic() - down_at
    server.start()
    up_at = time.monotonic()
    queued = len(commands.ids)
    try:
        events.wait_acked(1000)
        wait_for(lambda: len(commands.ids) >= queued + 5, timeout=30)  # and commands again
    finally:
        commands.stop()
        events.stop()
    wait_delivered(server, events)
    drained = elapsed(up_at)
    wait_commands_done(server, commands.ids)
    ev = tally_events(server, events)
    stale = stale_documents(server, events)
    cmd = tally_commands(server, commands.ids)

    fw_requests = fw_during["requests"].get("error", 0) - fw_before["requests"].get("error", 0)
    polls = cmd_during.get("poll_errors", 0) - cmd_before.get("poll_errors", 0)
    fw_bound = 2 * (2 * expected_attempts(outage, 0.5, 4.0, 0.5) + 3)  # two queues
    poll_bound = expected_attempts(outage, 0.5, 4.0, 0.5) + 1  # delays ≥ half the ceiling
    after = server.request_count(method="POST")
    report(
        ev.line("server down")
        + f" ({outage:.0f}s outage; {events.acked_count() - acked_at_stop} events acknowledged"
        f" while it was down; backlog delivered {drained} after the restart)"
    )
    report(cmd.line("server down"))
    report(
        f"[server down] requests during the outage: forwarder {fw_requests} (bound {fw_bound}), "
        f"commander polls {polls} (bound {poll_bound}); POSTs the restarted server received "
        f"until the backlog was delivered: {after}"
    )
    assert ev.lost == 0, f"acknowledged events never delivered: {ev.missing}"
    assert not stale, f"stateful updates out of order: {stale}"
    assert cmd.lost == 0 and cmd.conflicting == 0, cmd
    assert 1 <= fw_requests <= fw_bound
    assert 1 <= polls <= poll_bound
    assert agent.stop() == 0


@pytest.mark.timeout(180)
def test_tokens_revoked_every_few_seconds_lose_nothing(start_agent):
    agent, enrolled = start_agent()
    server = enrolled.server
    auth_before = server.auth_count()
    events = EventLoad(enrolled.config, "revoke", stateful=10).start()
    commands = CommandLoad(server, enrolled.credentials.uuid, interval=0.5).start()
    revocations = 0
    try:
        events.wait_acked(500)
        for _ in range(5):
            threading.Event().wait(3.0)  # "every few seconds": the pace of the fault
            server.revoke_tokens()
            revocations += 1
            events.wait_acked(200)
    finally:
        commands.stop()
        events.stop()
    wait_delivered(server, events)
    wait_commands_done(server, commands.ids)
    ev = tally_events(server, events)
    stale = stale_documents(server, events)
    cmd = tally_commands(server, commands.ids)
    refused = server.request_count(status=403)
    renewals = server.auth_count() - auth_before
    report(
        ev.line("tokens revoked")
        + f" ({revocations} revocations, {refused} requests refused with 403, "
        f"{renewals} token renewals)"
    )
    report(cmd.line("tokens revoked"))
    assert ev.lost == 0, f"acknowledged events never delivered: {ev.missing}"
    assert not stale, f"stateful updates out of order: {stale}"
    assert cmd.lost == 0 and cmd.conflicting == 0, cmd
    assert refused >= 1  # the revocations did bite
    # One renewal per revocation, shared by the forwarder's threads and the commander (a
    # few more when two processes find the revocation at the same moment).
    assert revocations <= renewals <= 4 * revocations
    assert agent.stop() == 0


@pytest.mark.timeout(180)
def test_a_server_slower_than_the_request_timeout_then_recovery(start_agent):
    agent, enrolled = start_agent(forwarder={"request_timeout": "1s", **BACKOFF})
    server = enrolled.server
    events = EventLoad(enrolled.config, "slow", stateful=10).start()
    commands = CommandLoad(server, enrolled.credentials.uuid, interval=0.5).start()
    try:
        events.wait_acked(500)
        before = forwarder_counters(agent)
        # every events POST waits 2 s before the server even reads it, for 10 s
        server.set_fault(delay=2.0, seconds=10, path="/api/v1/events")
        wait_for(lambda: not server.faults(), timeout=30, interval=0.5)
        during = forwarder_counters(agent)
        events.wait_acked(1000)
    finally:
        commands.stop()
        events.stop()
    wait_delivered(server, events)
    wait_commands_done(server, commands.ids)
    ev = tally_events(server, events)
    stale = stale_documents(server, events)
    cmd = tally_commands(server, commands.ids)
    timeouts = during["requests"].get("error", 0) - before["requests"].get("error", 0)
    report(
        ev.line("slow server") + f" ({timeouts} requests timed out on the agent side, last error: "
        f"{during.get('last_error')!r:.90})"
    )
    report(cmd.line("slow server"))
    assert ev.lost == 0, f"acknowledged events never delivered: {ev.missing}"
    assert not stale, f"stateful updates out of order: {stale}"
    assert cmd.lost == 0 and cmd.conflicting == 0, cmd
    assert timeouts >= 1
    assert (
        "timed out" in str(during.get("last_error")).lower()
        or "timeout" in str(during.get("last_error")).lower()
    )
    assert forwarder_counters(agent)["queue_events"] == 0
    assert agent.stop() == 0
