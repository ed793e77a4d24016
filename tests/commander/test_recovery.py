"""Crashes and restarts: kill -9 of the commander, and the ``restart`` command.

The commander runs as a real subprocess (``agentbus commander``) so it can be killed;
the forwarder runs in the test process, the reference server in its own.
"""

from __future__ import annotations

import threading

import pytest

from bus import Executor
from bus.control import ControlServer
from core.service import endpoints_from_config
from tests.fixtures.commander import status, wait_status, write_config
from tests.fixtures.common import wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def setup(enroll_agent, run_forwarder, tmp_path):
    """(config, server, config file) of an enrolled agent whose forwarder runs."""

    def make(forwarder: bool = True, **commander):
        sections = {
            "commander": {"republish_interval": "200ms", "hello_grace": "500ms", **commander},
            "forwarder": {"batch_interval": "50ms"},
        }
        config, _creds, server = enroll_agent(sections=sections)
        if forwarder:
            run_forwarder(config)
        return config, server, write_config(config, tmp_path / "agent.toml")

    return make


def executor_for(config, topics, **kw) -> Executor:
    eps = endpoints_from_config(config)
    ex = Executor(topics, commands_endpoint=eps.commands, results_endpoint=eps.results, **kw)
    ex.start()
    return ex


def results_of(server, doc):
    return [(r["code"], r["message"]) for r in server.command_results(doc)]


def settled(config) -> bool:
    """The commander has nothing left to hand over and the forwarder nothing to send."""
    from tests.fixtures.forwarder import forwarder_status

    st = status(config)
    fw = forwarder_status(config)
    return st.get("outbox") == 0 and st.get("in_flight") == 0 and fw.get("queue_events") == 0


def test_kill_9_while_the_executor_runs_ends_with_one_result(setup, procs):
    config, server, cfg = setup()
    release = threading.Event()
    ex = executor_for(config, ["myapp"], handlers={"block": lambda c: release.wait(60) and "done"})
    try:
        first = procs("commander", "-m", "agent.main", "commander", "--config", str(cfg))
        wait_status(config, "commander")
        doc = server.queue_command(server.agents()[0]["id"], name="myapp.block", timeout=60)
        wait_for(lambda: status(config).get("commands_acked") == 1)
        first.kill9()
        release.set()  # the executor finishes while no commander listens
        procs("commander", "-m", "agent.main", "commander", "--config", str(cfg))
        wait_for(lambda: len(server.command_results(doc)) >= 1, 20)
        wait_for(lambda: settled(config), 20)
        assert results_of(server, doc) == [(1, "Agent stopped during execution")]
        assert status(config)["executed"]["1"] == 1
    finally:
        ex.stop()


def test_kill_9_before_publishing_runs_the_command_after_restart(setup, procs):
    # A long start-up grace and no executor: the command is stored, not yet published.
    config, server, cfg = setup(hello_grace="60s")
    first = procs("commander", "-m", "agent.main", "commander", "--config", str(cfg))
    wait_status(config, "commander")
    doc = server.queue_command(server.agents()[0]["id"], name="myapp.work", timeout=60)
    wait_for(lambda: status(config).get("commands_received") == 1)
    st = status(config)
    assert st.get("commands_published", 0) == 0 and st["stored"]["received"] == 1
    first.kill9()
    calls: list[str] = []
    ex = executor_for(config, ["myapp"], handlers={"work": lambda c: calls.append(c.id) or "ok"})
    try:
        procs("commander", "-m", "agent.main", "commander", "--config", str(cfg))
        wait_for(lambda: len(server.command_results(doc)) >= 1, 20)
        wait_for(lambda: settled(config), 20)
        assert results_of(server, doc) == [(0, "ok")]
        assert calls == [doc]
    finally:
        ex.stop()


def test_restart_without_supervisor_reexecutes_and_reports_2_then_0(setup, procs):
    config, server, cfg = setup()
    commander = procs("commander", "-m", "agent.main", "commander", "--config", str(cfg))
    procs("agent-executor", "-m", "agent.main", "agent-executor", "--config", str(cfg))
    before = wait_status(config, "commander")
    wait_for(lambda: status(config)["live_executors"] == 1)
    doc = server.queue_command(server.agents()[0]["id"], name="restart")
    wait_for(lambda: len(server.command_results(doc)) >= 2, 30)
    assert results_of(server, doc) == [(2, "Restarting the agent"), (0, "Agent restarted")]
    after = wait_status(config, "commander")
    # Same process (re-executed in place), started again.
    assert after["pid"] == before["pid"] == commander.pid
    assert after["started_at"] > before["started_at"]
    assert commander.popen.poll() is None
    assert [c["status"] for c in server.commands()] == ["done"]


def test_restart_with_a_supervisor_asks_it_and_reports_0_when_back(setup, procs):
    config, server, cfg = setup()
    asked: list[dict] = []

    def restart(req: dict) -> dict:
        asked.append(req)
        return {"ok": True}

    eps = endpoints_from_config(config)
    supervisor = ControlServer(
        eps.control("agent"), {"restart": restart}, admin_endpoint=eps.admin("agent")
    )
    supervisor.start()
    try:
        commander = procs("commander", "-m", "agent.main", "commander", "--config", str(cfg))
        procs("agent-executor", "-m", "agent.main", "agent-executor", "--config", str(cfg))
        before = wait_status(config, "commander")
        wait_for(lambda: status(config)["live_executors"] == 1)
        doc = server.queue_command(server.agents()[0]["id"], name="restart")
        wait_for(lambda: asked, 20)
        # Asked once the 2 is on the forwarder's disk: it reaches the server just after.
        wait_for(lambda: results_of(server, doc), 20)
        assert results_of(server, doc) == [(2, "Restarting the agent")]
        assert status(config)["started_at"] == before["started_at"]  # it did not restart itself
        # The supervisor restarts the agent: stop the commander, start it again.
        assert commander.stop() == 0
        procs("commander", "-m", "agent.main", "commander", "--config", str(cfg))
        wait_for(lambda: len(server.command_results(doc)) >= 2, 20)
        assert results_of(server, doc) == [(2, "Restarting the agent"), (0, "Agent restarted")]
    finally:
        supervisor.stop()


def test_restart_under_agentbus_run_restarts_every_service(setup, procs, tmp_path):
    """The real supervisor: the commander asks it, every child restarts, 0 is reported."""
    config, server, _ = setup(forwarder=False)
    off = {"enabled": False}
    cfg = write_config(
        config,
        tmp_path / "run.toml",
        {"collectors.logcollector": off, "collectors.inventory": off, "collectors.fim": off},
    )
    from tests.fixtures.forwarder import forwarder_status

    procs("agentbus-run", "-m", "agent.main", "run", "--config", str(cfg))
    before = wait_status(config, "commander", timeout=30)
    wait_for(lambda: status(config)["live_executors"] == 1, 20)
    forwarder_before = forwarder_status(config)["started_at"]
    doc = server.queue_command(server.agents()[0]["id"], name="restart")
    wait_for(lambda: len(server.command_results(doc)) >= 2, 40)
    assert results_of(server, doc) == [(2, "Restarting the agent"), (0, "Agent restarted")]
    after = wait_status(config, "commander")
    # every service started again (threads of the re-executed agent by default)
    assert after["started_at"] > before["started_at"]
    assert forwarder_status(config)["started_at"] > forwarder_before


def test_sigterm_stops_the_idle_commander_and_agent_executor_at_once(setup, procs):
    """The signal handler only sets the stop flag; the flag wakes loops that sleep with no
    timeout (the commander's ZeroMQ poll, the agent executor's event)."""
    config, _server, cfg = setup()
    commander = procs("commander", "-m", "agent.main", "commander", "--config", str(cfg))
    executor = procs("agent-executor", "-m", "agent.main", "agent-executor", "--config", str(cfg))
    wait_status(config, "commander")
    wait_status(config, "agent-executor")
    wait_for(lambda: status(config)["live_executors"] == 1)
    # Proc.stop kills (exit -9) whatever has not stopped within the timeout.
    assert executor.stop(timeout=5) == 0
    assert commander.stop(timeout=5) == 0
