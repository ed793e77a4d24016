"""Group files change what a running agent does: `agentbus run` (a real subprocess, both
isolation modes), the reference server serving the files, set-group through the commander.

A group file that adds a log file makes that file's lines reach the server, and only the
logcollector is restarted (the forwarder keeps its start time); a bad value or a refused
key changes nothing and the result names the key; leaving the group removes its effect;
`config show --origin` names the group."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import Any

import pytest

from bus import Ingest, make_event
from bus.errors import BusError
from core.groupset import read_stored
from tests.fixtures.common import wait_for
from tests.fixtures.run import clean_env

FAST = {"republish_interval": "200ms", "hello_grace": "2s"}
#: the logcollector on, with nothing to follow but what a group adds
QUIET_LOGCOLLECTOR = {
    "enabled": True,
    "paths": [],
    "syslog_paths": [],
    "journald": "off",
    "poll_interval": "100ms",
}
COLLECTORS = {
    "logcollector": QUIET_LOGCOLLECTOR,
    "inventory": {"enabled": False},
    "fim": {"enabled": False},
    "sca": {"enabled": False},
}


def agentbus(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.main", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**clean_env(), **(env or {})},
    )


def command(server, name: str, args: dict[str, Any] | None = None) -> tuple[int, str]:
    doc = server.queue_command(server.agents()[0]["id"], name=name, args=args)
    results = wait_for(lambda: server.command_results(doc), timeout=60)
    return results[0]["code"], results[0]["message"]


def children(agent) -> dict[str, Any]:
    return agent.status()["services"]["agent"]["counters"]["children"]


def group_file(path) -> str:
    return f"logcollector:\n  localfiles:\n    - location: {path}\n"


def lines_arrived(server, text: str) -> bool:
    return any(text in json.dumps(e) for e in server.events(module="logcollector"))


@pytest.fixture
def running(enrolled_agent, agent_process, request):
    config, _credentials, server = enrolled_agent
    isolation = getattr(request, "param", "thread")
    agent = agent_process(
        config,
        agent={"isolation": isolation},
        commander=FAST,
        forwarder={"batch_interval": "50ms"},
        collectors=COLLECTORS,
    )
    return agent, server


@pytest.mark.timeout(150)
@pytest.mark.parametrize("running", ["thread", "process"], indirect=True)
def test_a_group_file_adds_a_log_file_and_only_the_logcollector_restarts(running, tmp_path):
    agent, server = running
    log = tmp_path / "web.log"
    server.put_file("web.yml", group_file(log))
    before = children(agent)
    forwarder_started = agent.status()["services"]["forwarder"]["counters"]["started_at"]

    code, message = command(server, "set-group", {"groups": ["web"]})
    assert (code, message) == (
        0,
        "Groups set to web; 1 group file(s) fetched; reloaded logcollector",
    )

    after = children(agent)
    # the forwarder (and every other service) kept running: same process, same start
    for name in ("forwarder", "commander", "agent-executor"):
        assert after[name]["since"] == before[name]["since"], name
        assert after[name]["pid"] == before[name]["pid"] and after[name]["reloads"] == 0
    assert agent.status()["services"]["forwarder"]["counters"]["started_at"] == forwarder_started
    assert after["logcollector"]["reloads"] == 1 and after["logcollector"]["up"]
    assert after["logcollector"]["restarts"] == 0  # a reload is no crash

    log.write_text("Dec  3 16:00:00 web app: hello from the group's file\n")
    wait_for(lambda: lines_arrived(server, "hello from the group's file"), timeout=30)

    report = json.loads(agentbus("status", "--json", "--config", str(agent.config_file)).stdout)
    assert report["groups"]["groups"] == ["web"] and report["groups"]["applied_at"]
    table = agentbus("status", "--config", str(agent.config_file)).stdout
    assert "groups          web (files applied" in table

    # Leaving the group (set-group with the others): its path is no longer followed.
    server.put_file("other.yml", "inventory:\n  interval: 2h\n")
    code, message = command(server, "set-group", {"groups": ["other"]})
    assert code == 0 and message.endswith("reloaded logcollector"), message
    assert children(agent)["logcollector"]["reloads"] == 2
    shown = json.loads(
        agentbus("config", "show", "--json", "--origin", "--config", str(agent.config_file)).stdout
    )
    assert str(log) not in shown["values"]["collectors.logcollector.paths"]
    assert shown["groups"] == ["other"]
    assert children(agent)["forwarder"]["since"] == before["forwarder"]["since"]
    assert agent.stop() == 0


@pytest.mark.timeout(120)
def test_config_show_names_the_group_as_the_origin_of_what_it_set(running, tmp_path):
    agent, server = running
    server.put_file(
        "web.yml",
        group_file(tmp_path / "web.log") + "agentbus:\n  forwarder:\n    max_eps: 500\n",
    )
    assert command(server, "set-group", {"groups": ["web"]})[0] == 0
    shown = json.loads(
        agentbus("config", "show", "--json", "--origin", "--config", str(agent.config_file)).stdout
    )
    assert shown["values"]["forwarder.max_eps"] == 500
    assert shown["origins"]["forwarder.max_eps"] == "group:web"
    assert shown["origins"]["collectors.logcollector.paths"].endswith("+ group:web")
    assert shown["origins"]["forwarder.batch_interval"] == str(agent.config_file)
    assert shown["origins"]["agent.isolation"] == str(agent.config_file)
    # the environment is above the groups
    env = {"AGENTBUS_FORWARDER_MAX_EPS": "7"}
    over = agentbus(
        "config", "show", "--json", "--origin", "--config", str(agent.config_file), env=env
    )
    shown = json.loads(over.stdout)
    assert shown["values"]["forwarder.max_eps"] == 7
    assert shown["origins"]["forwarder.max_eps"] == "env:AGENTBUS_FORWARDER_MAX_EPS"
    text = agentbus("config", "show", "--origin", "--config", str(agent.config_file)).stdout
    assert any(
        line.startswith("forwarder.max_eps") and line.endswith("# group:web")
        for line in text.splitlines()
    )
    # the forwarder's section changed: it was restarted, and nothing else but the
    # logcollector
    kids = children(agent)
    assert kids["forwarder"]["reloads"] == 1 and kids["commander"]["reloads"] == 0
    assert agent.stop() == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "events:\n  batch_size: plenty\n",
            "Group bad: bad.yml refused: events.batch_size: expected a size like '256KB' or "
            "'1MB', got 'plenty'",
        ),
        (
            "agent:\n  server_url: https://evil.example\n",
            "Group bad: bad.yml refused: agent: the connection to the server, TLS and the "
            "data and run directories are set by the local file only",
        ),
        (
            "agentbus:\n  agent:\n    server_url: https://evil.example\n",
            "Group bad: bad.yml refused: agentbus.agent: refused: the connection to the "
            "server, TLS and the data and run directories are set by the local file only",
        ),
        (
            "agentbus:\n  collectors:\n    logcollector:\n      commands: [id]\n",
            "Group bad: bad.yml refused: agentbus.collectors.logcollector.commands: refused: "
            "commands the agent runs are set by the local file only",
        ),
    ],
    ids=["bad-value", "agent-section", "own-agent-section", "commands"],
)
def test_a_bad_or_refused_group_file_changes_nothing(running, tmp_path, content, expected):
    agent, server = running
    log = tmp_path / "web.log"
    server.put_file("web.yml", group_file(log))
    assert command(server, "set-group", {"groups": ["web"]})[0] == 0
    applied = read_stored(agent.config.data_dir)
    before = children(agent)

    server.put_file("bad.yml", content)
    assert command(server, "set-group", {"groups": ["web", "bad"]}) == (1, expected)

    # the set in force, the groups and every service are as they were
    assert read_stored(agent.config.data_dir) == applied
    assert server.agents()[0]["groups"] == ["web"]
    after = children(agent)
    assert {n: (c["since"], c["reloads"]) for n, c in after.items()} == {
        n: (c["since"], c["reloads"]) for n, c in before.items()
    }
    log.write_text("Dec  3 16:00:00 web app: still read\n")
    wait_for(lambda: lines_arrived(server, "still read"), timeout=30)
    shown = json.loads(
        agentbus("config", "show", "--json", "--origin", "--config", str(agent.config_file)).stdout
    )
    assert shown["values"]["agent.server_url"] == server.url
    assert shown["groups"] == ["web"]
    assert agent.stop() == 0


@pytest.mark.timeout(180)
def test_a_kill_9_during_a_reload_loses_nothing_acknowledged(running):
    """The group file changes the forwarder's section, so the reload stops and starts the
    forwarder while a client keeps sending; the agent is killed (-9) in the middle."""
    agent, server = running
    config = agent.config
    server.set_fault(status=503, path="/api/v1/events/stateless")  # everything stays queued
    send_events(config, 0, 1000)
    acked = set(range(1000))
    stop = threading.Event()

    def keep_sending() -> None:
        seq = 1000
        while not stop.is_set():
            batch = list(range(seq, seq + 50))
            seq += 50
            try:
                with Ingest(f"ipc://{config.agent.run_dir}/ingest.sock", timeout=2) as ingest:
                    result = ingest.send([make_event("test", "seq", {"seq": i}) for i in batch])
            except BusError:
                continue  # not acknowledged: the client would send these again
            if result.ok:
                acked.update(batch)

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        server.put_file("web.yml", "events:\n  batch_interval: 200ms\n")
        server.queue_command(server.agents()[0]["id"], name="set-group", args={"groups": ["web"]})
        wait_for(lambda: "stopped forwarder" in agent.log.read_text(), timeout=60)
        agent.proc.kill()
        agent.proc.wait(timeout=10)
    finally:
        stop.set()
        sender.join(timeout=30)
    assert len(acked) > 1000
    # the new set is stored whole (it was, before the reload began)
    assert read_stored(config.data_dir).groups == ["web"]

    server.clear_faults()
    agent.start()
    wait_for(lambda: acked <= delivered_seqs(server), timeout=90)
    shown = json.loads(
        agentbus("config", "show", "--json", "--origin", "--config", str(agent.config_file)).stdout
    )
    assert shown["origins"]["forwarder.batch_interval"] == "group:web"
    assert agent.stop() == 0


def send_events(config, start: int, n: int) -> None:
    with Ingest(f"ipc://{config.agent.run_dir}/ingest.sock", timeout=10) as ingest:
        for first in range(start, start + n, 500):
            batch = [
                make_event("test", "seq", {"seq": i})
                for i in range(first, min(first + 500, start + n))
            ]
            assert ingest.send(batch).ok


def delivered_seqs(server) -> set[int]:
    return {e["data"]["seq"] for e in server.events(module="test")}


@pytest.mark.timeout(120)
def test_a_group_that_switches_a_collector_on_starts_it_and_leaving_stops_it(running, tmp_path):
    agent, server = running
    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "hosts").write_text("127.0.0.1 localhost\n")
    server.put_file(
        "fim.yml",
        f"agentbus:\n  collectors:\n    fim:\n      enabled: true\n      paths: [{watched}]\n",
    )
    assert command(server, "set-group", {"groups": ["fim"]}) == (
        0,
        "Groups set to fim; 1 group file(s) fetched; started fim",
    )
    assert children(agent)["fim"]["up"]
    wait_for(lambda: server.count_events(module="fim") >= 1, timeout=30)
    assert command(server, "set-group", {"groups": []}) == (
        0,
        "Groups set to (none); 0 group file(s) fetched; stopped fim",
    )
    assert "fim" not in children(agent)
    assert agent.stop() == 0
