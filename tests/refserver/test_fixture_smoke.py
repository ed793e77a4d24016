"""The fixture itself: a server that starts, answers, restarts and keeps its state."""

from __future__ import annotations

from tests.refserver.helpers import enroll, stateless_pair


def test_fixture_serves_and_restarts_keeping_agents_and_commands(refserver) -> None:
    agent = enroll(refserver.url)
    assert agent.post("stateless", stateless_pair()).status_code == 204
    doc = refserver.queue_command(agent_id=agent.id, name="fetch-config")
    refserver.stop()
    assert not refserver.running
    refserver.start()
    assert [a["id"] for a in refserver.agents()] == [agent.id]
    assert refserver.count_events(module="logcollector") == 1
    # The token signed before the restart still verifies: the key pair is kept on disk.
    r = agent.poll()
    assert r.status_code == 200
    assert [c["document_id"] for c in r.json()["commands"]] == [doc]
