"""`agentbus run`: supervision, graceful stop, status figures and the health endpoint."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys

import pytest
import requests

from bus import Ingest, Publisher, make_event
from bus.errors import BusError
from tests.fixtures.common import wait_for
from tests.fixtures.run import clean_env, fault_env, write_config


def agentbus(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
    )


def send_events(config, n: int, start: int = 0) -> None:
    with Ingest(f"ipc://{config.agent.run_dir}/ingest.sock", timeout=10) as ingest:
        for first in range(start, start + n, 500):
            batch = [
                make_event("test", "seq", {"seq": i})
                for i in range(first, min(first + 500, start + n))
            ]
            result = ingest.send(batch)
            assert result.ok, result


def delivered_seqs(server) -> set[int]:
    return {e["data"]["seq"] for e in server.events(module="test")}


def test_run_refuses_an_agent_that_is_not_enrolled(make_config, tmp_path):
    path = write_config(make_config(), tmp_path / "agent.toml")
    result = agentbus("run", "--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "agentbus register" in lines[0]


@pytest.mark.timeout(120)
def test_a_killed_service_process_is_restarted_and_reported(enrolled_agent, agent_process):
    config, _credentials, _server = enrolled_agent
    agent = agent_process(config, agent={"isolation": "process"})
    victim = agent.child_pid("commander")
    assert victim != agent.proc.pid  # its own process
    os.kill(victim, signal.SIGKILL)

    def restarted():
        child = agent.status()["services"]["agent"]["counters"]["children"]["commander"]
        return child["up"] and child["restarts"] == 1 and child["pid"] != victim and child

    child = wait_for(restarted, timeout=30)
    assert child["last_exit"] == "signal SIGKILL"
    table = agentbus("status", "--config", str(agent.config_file))
    assert table.returncode == 0
    assert "restarts 1, last exit signal SIGKILL" in table.stdout
    assert agent.stop() == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_a_crashing_service_is_restarted_and_reported(
    enrolled_agent, agent_process, tmp_path, isolation
):
    config, _credentials, server = enrolled_agent
    marker = tmp_path / "crashed-once"
    env = fault_env(TEST_CRASH_SERVICE="commander", TEST_CRASH_ONCE=str(marker))
    agent = agent_process(config, env, agent={"isolation": isolation})

    def restarted():
        report = agent.status()
        supervisor = report["services"]["agent"]["counters"]
        child = supervisor["children"]["commander"]
        return report["summary"]["healthy"] and child["restarts"] == 1 and supervisor

    supervisor = wait_for(restarted, timeout=30)
    assert marker.exists()
    assert supervisor["isolation"] == isolation
    child = supervisor["children"]["commander"]
    assert child["up"] and child["last_exit"] == "code 1"
    pids = {c["pid"] for c in supervisor["children"].values()}
    if isolation == "thread":
        assert pids == {agent.proc.pid}  # every service in the agent's one process
    else:
        assert agent.proc.pid not in pids and len(pids) == len(supervisor["children"])
    table = agentbus("status", "--config", str(agent.config_file))
    assert "restarts 1, last exit code 1" in table.stdout
    log = agent.log.read_text()
    assert "[commander] commander stopped on an unexpected error" in log
    assert "injected crash of commander" in log
    # the restarted commander works: a command reaches its executor and is reported
    doc = server.queue_command(server.agents()[0]["id"], name="set-group", args={"groups": []})
    wait_for(lambda: server.command_results(doc), timeout=30)
    assert agent.stop() == 0


@pytest.mark.timeout(120)
def test_a_crashing_collector_thread_is_restarted_and_goes_on_reading(
    enrolled_agent, agent_process, tmp_path
):
    config, _credentials, server = enrolled_agent
    log = tmp_path / "app.log"
    log.write_text("")
    marker = tmp_path / "crashed-once"
    agent = agent_process(
        config,
        fault_env(TEST_CRASH_SERVICE="logcollector", TEST_CRASH_ONCE=str(marker)),
        collectors={
            "logcollector": {"enabled": True, "paths": [str(log)]},
            "inventory": {"enabled": False},
            "fim": {"enabled": False},
        },
    )

    def restarted():
        child = agent.status()["services"]["agent"]["counters"]["children"]["logcollector"]
        return child["up"] and child["restarts"] == 1 and child

    child = wait_for(restarted, timeout=30)
    assert child["pid"] == agent.proc.pid and child["last_exit"] == "code 1"
    assert "[logcollector] logcollector stopped on an unexpected error" in agent.log.read_text()
    with log.open("a") as f:
        f.write("Dec  3 16:00:00 host app: after the crash\n")
    wait_for(
        lambda: any("after the crash" in str(e) for e in server.events(module="logcollector")),
        timeout=30,
    )
    assert agent.stop() == 0


@pytest.mark.timeout(120)
def test_sigterm_stops_everything_with_exit_0_and_loses_nothing(enrolled_agent, agent_process):
    config, _credentials, server = enrolled_agent
    agent = agent_process(config)
    pids = [c["pid"] for c in agent.status()["services"]["agent"]["counters"]["children"].values()]
    send_events(config, 3000)  # acknowledged: on disk before we stop
    assert agent.stop() == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert (
        "agentbus is not running" in agentbus("status", "--config", str(agent.config_file)).stderr
    )

    agent.start()  # whatever was not sent before the stop goes now
    wait_for(lambda: delivered_seqs(server) == set(range(3000)), timeout=60)
    assert agent.stop() == 0


@pytest.mark.timeout(150)
def test_status_shows_a_known_backlog_while_it_drains(enrolled_agent, agent_process):
    config, _credentials, server = enrolled_agent
    server.set_fault(status=503, path="/api/v1/events/stateless")
    agent = agent_process(config, forwarder={"backoff_initial": "100ms", "backoff_max": "500ms"})
    send_events(config, 5000)

    def backlog():
        c = agent.status()["services"]["forwarder"]["counters"]
        return (
            c.get("queues", {}).get("stateless", {}).get("events") == 5000
            and c.get("retried", 0) >= 1
            and c
        )

    wait_for(backlog, timeout=30)
    report = json.loads(agentbus("status", "--json", "--config", str(agent.config_file)).stdout)
    forwarder = report["services"]["forwarder"]["counters"]
    assert forwarder["queues"]["stateless"]["events"] == 5000
    assert forwarder["retried"] >= 1
    table = agentbus("status", "--config", str(agent.config_file)).stdout
    assert "5,000 events" in table

    server.clear_faults()
    wait_for(
        lambda: agent.status()["services"]["forwarder"]["counters"]["queue_events"] == 0, timeout=60
    )
    assert delivered_seqs(server) == set(range(5000))
    assert agent.stop() == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_health_endpoint_reports_a_hung_service(enrolled_agent, agent_process, tmp_path, isolation):
    config, _credentials, _server = enrolled_agent
    port = _free_port()
    hang = tmp_path / "hang"
    agent = agent_process(
        config,
        fault_env(TEST_HANG_SERVICE="forwarder", TEST_HANG_WHILE=str(hang)),
        agent={"isolation": isolation},
        health={"enabled": True, "listen": f"127.0.0.1:{port}"},
    )
    url = f"http://127.0.0.1:{port}"
    assert requests.get(f"{url}/health", timeout=10).status_code == 200
    metrics = requests.get(f"{url}/metrics", timeout=10).text
    assert 'agentbus_service_up{service="forwarder"} 1.0' in metrics
    assert 'agentbus_child_up{child="commander"} 1.0' in metrics

    hang.touch()  # alive but not answering
    try:
        wait_for(lambda: requests.get(f"{url}/health", timeout=10).status_code == 503, timeout=20)
        metrics = requests.get(f"{url}/metrics", timeout=10).text
        assert 'agentbus_service_up{service="forwarder"} 0.0' in metrics
    finally:
        hang.unlink()
    wait_for(lambda: requests.get(f"{url}/health", timeout=10).status_code == 200, timeout=20)
    assert agent.stop() == 0


@pytest.mark.timeout(120)
def test_a_stopped_service_process_is_reported_hung(enrolled_agent, agent_process):
    config, _credentials, _server = enrolled_agent
    port = _free_port()
    agent = agent_process(
        config,
        agent={"isolation": "process"},
        health={"enabled": True, "listen": f"127.0.0.1:{port}"},
    )
    url = f"http://127.0.0.1:{port}"
    forwarder = agent.child_pid("forwarder")
    os.kill(forwarder, signal.SIGSTOP)  # alive but not answering
    try:
        wait_for(lambda: requests.get(f"{url}/health", timeout=10).status_code == 503, timeout=20)
    finally:
        os.kill(forwarder, signal.SIGCONT)
    wait_for(lambda: requests.get(f"{url}/health", timeout=10).status_code == 200, timeout=20)
    assert agent.stop() == 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_restart_re_executes_the_whole_agent(enrolled_agent, agent_process, isolation):
    config, _credentials, server = enrolled_agent
    agent = agent_process(config, agent={"isolation": isolation})
    before = agent.status()["services"]["agent"]["counters"]
    doc = server.queue_command(server.agents()[0]["id"], name="restart")

    def restarted():
        try:
            report = agent.status()
        except Exception:
            return False
        counters = report["services"]["agent"]["counters"]
        return (
            report["summary"]["healthy"]
            and counters.get("started_at", 0) > before["started_at"]
            and counters
        )

    after = wait_for(restarted, timeout=60)
    assert after["pid"] == agent.proc.pid == before["pid"]  # re-executed in place
    assert "re-executing" in agent.log.read_text()
    wait_for(lambda: len(server.command_results(doc)) >= 2, timeout=30)
    results = [(r["code"], r["message"]) for r in server.command_results(doc)]
    assert results == [(2, "Restarting the agent"), (0, "Agent restarted")]
    assert agent.stop() == 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(120)
def test_a_refused_key_stops_the_whole_agent_with_exit_3(enrolled_agent, agent_process):
    from comms.credentials import load_credentials, save_credentials

    config, _credentials, server = enrolled_agent
    agent = agent_process(config)
    creds = load_credentials(config.data_dir)
    save_credentials(config.data_dir, dataclasses.replace(creds, key="W" * 32))
    (config.data_dir / "token.json").unlink(missing_ok=True)
    server.revoke_tokens()  # the next call must authenticate, with the wrong key
    # Fast path, unacknowledged: the commander's next poll may meet the refusal first and
    # stop the agent before an acknowledged send could be answered.
    with (
        contextlib.suppress(BusError),
        Publisher(f"ipc://{config.agent.run_dir}/events.sock", send_timeout=10) as pub,
    ):
        for i in range(10):
            pub.send("test", "seq", {"seq": i})
    assert agent.proc is not None
    assert agent.proc.wait(timeout=60) == 3
    log = agent.log.read_text()
    assert "stopped (exit 3): the server refused this agent's credentials" in log
    assert "agentbus: " in log.splitlines()[-1]
