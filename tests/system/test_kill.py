"""kill -9 of every service of `agentbus run`, at random moments under load, several times.

Events go through the acknowledged path (an acknowledged event is on disk and must reach
the server); commands are queued on the server all along (each must end with exactly one
final result). The random moments come from a seeded generator: ``SYSTEM_SEED=n`` replays
a run.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.fixtures.system import (
    SEED,
    CommandLoad,
    EventLoad,
    elapsed,
    explain_commands,
    handoff_losses,
    kill_child,
    kill_everything,
    kill_supervisor,
    random_pause,
    report,
    stale_documents,
    tally_commands,
    tally_events,
    wait_commands_done,
    wait_delivered,
)

pytestmark = [pytest.mark.system, pytest.mark.both_isolations]

ROUNDS = 3
#: the victims of one round, by ``[agent] isolation``: "agent" is the whole agent (the
#: supervisor together with every service, whether threads of its process or processes),
#: "supervisor" the supervisor process alone (its children must follow it)
VICTIMS = {
    "thread": ("agent", "agent"),
    "process": ("forwarder", "commander", "agent-executor", "agent", "supervisor"),
}


@pytest.mark.timeout(300)
def test_kill_9_of_each_service_under_load_loses_nothing(start_agent):
    rng = random.Random(SEED)
    agent, enrolled = start_agent()
    server = enrolled.server
    started = time.monotonic()
    events = EventLoad(enrolled.config, "kill", stateful=10).start()
    commands = CommandLoad(server, enrolled.credentials.uuid, interval=0.4).start()
    kills = []
    commander_kills: list[tuple[float, float]] = []  # when a commander may have died
    try:
        events.wait_acked(500)
        for _round in range(ROUNDS):
            victims = list(VICTIMS[enrolled.config.agent.isolation])
            rng.shuffle(victims)
            for victim in victims:
                pause = random_pause(rng, 0.2, 2.0)
                now = time.time()
                if victim in ("agent", "commander"):
                    commander_kills.append((now, now))
                elif victim == "supervisor":  # its orphaned commander stops gracefully
                    commander_kills.append((now, now + enrolled.config.agent.stop_timeout + 1))
                if victim == "agent":
                    kill_everything(agent)
                elif victim == "supervisor":
                    kill_supervisor(agent)
                else:
                    kill_child(agent, victim)
                kills.append(f"{victim}@{pause:.2f}s")
                events.wait_acked(100)  # the load goes on between two kills
    finally:
        commands.stop()
        events.stop()
    wait_delivered(server, events)
    wait_commands_done(server, commands.ids)
    ev = tally_events(server, events)
    stale = stale_documents(server, events)
    cmd = tally_commands(server, commands.ids)
    cmd.handoff = handoff_losses(server, agent, cmd.missing, commander_kills)
    mode = enrolled.config.agent.isolation
    report(
        ev.line(f"kill -9, isolation {mode}")
        + f" (seed {SEED}, {len(kills)} kills, {elapsed(started)})"
    )
    report(cmd.line("kill -9"))
    updates = sum(1 for seq in events.acked if events.document(seq) is not None)
    report(
        f"[kill -9] stateful: {updates} updates of {events.documents} documents (included "
        f"above), {events.documents - len(stale)} documents in their last state, "
        f"{len(stale)} out of order"
    )
    report(f"[kill -9] order: {' '.join(kills)}")
    assert ev.lost == 0, f"acknowledged events never delivered: {ev.missing}"
    assert ev.foreign == 0
    assert not stale, f"stateful updates out of order: {stale}"
    lost = [doc for doc in cmd.missing if doc not in cmd.handoff]
    assert cmd.lost == 0, explain_commands(server, agent, lost)
    assert len(cmd.handoff) <= len(commander_kills)
    assert cmd.conflicting == 0
    assert cmd.queued >= 10
    assert agent.stop() == 0
