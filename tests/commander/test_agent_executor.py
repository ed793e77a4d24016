"""The built-in ``agent`` executor end to end: set-group with real files, fetch-config, bad
arguments and unknown names (reference server, real forwarder, commander in a thread)."""

from __future__ import annotations

import stat

import pytest

from bus.errors import EXIT_RUNTIME
from bus.executor import Command, Executor
from bus.results import ResultCode
from commander import agent_executor
from commander.agent_executor import AgentActions, AgentExecutorService, make_executor
from comms.credentials import load_credentials
from core.groupset import read_stored
from tests.fixtures.commander import commander_thread, status, wait_status
from tests.fixtures.common import wait_for

FAST = {
    "commander": {"republish_interval": "200ms", "hello_grace": "2s"},
    "forwarder": {"batch_interval": "50ms"},
}


@pytest.fixture
def agent(enroll_agent, run_forwarder):
    config, _creds, server = enroll_agent(sections=FAST)
    run_forwarder(config)
    executor = make_executor(config)
    executor.start()
    with commander_thread(config, None):
        wait_for(lambda: status(config)["live_executors"] == 1)
        yield config, server, server.agents()[0]["id"]
    executor.stop()


def run(server, agent_id, name, args=None, timeout=15):
    doc = server.queue_command(agent_id, name=name, args=args)
    wait_for(lambda: server.command_results(doc), timeout)
    return [(r["code"], r["message"]) for r in server.command_results(doc)]


NO_SUPERVISOR = "no supervisor answered: each service applies them when it starts"


def test_set_group_fetches_the_files_stores_the_groups_and_updates_the_metadata(agent):
    config, server, agent_id = agent
    server.put_file("web.yml", "logcollector:\n  localfiles:\n    - location: /tmp/web.log\n")
    server.put_file("linux.yml", b"logcollector: {}\n")
    assert run(server, agent_id, "set-group", {"groups": ["web", "linux"]}) == [
        (0, f"Groups set to web, linux; 2 group file(s) fetched; {NO_SUPERVISOR}")
    ]
    groups_dir = config.data_dir / "groups"
    assert (groups_dir / "web.yml").read_text().endswith("- location: /tmp/web.log\n")
    assert (groups_dir / "linux.yml").read_bytes() == b"logcollector: {}\n"
    assert stat.S_IMODE((groups_dir / "web.yml").stat().st_mode) == 0o600
    assert read_stored(config.data_dir).groups == ["web", "linux"]
    assert load_credentials(config.data_dir).groups == ("web", "linux")
    # The result itself went through the forwarder after the change: the server saw the
    # new groups in the agent metadata line.
    wait_for(lambda: server.agents()[0]["groups"] == ["web", "linux"])

    # Leaving a group removes its file; fetch-config fetches the current ones again.
    assert run(server, agent_id, "set-group", {"groups": ["web"]})[0][0] == 0
    assert sorted(p.name for p in groups_dir.iterdir()) == ["applied.json", "web.yml"]
    # one generation directory is left: the one in force
    assert len([p for p in config.data_dir.glob("groups.*") if p.is_dir()]) == 1
    server.put_file("web.yml", "inventory:\n  interval: 2h\nsyscheck: {}\n")
    assert run(server, agent_id, "fetch-config") == [
        (
            0,
            "1 group file(s) fetched (1 setting(s) ignored, see the agent's log); " + NO_SUPERVISOR,
        )
    ]
    assert (groups_dir / "web.yml").read_text() == "inventory:\n  interval: 2h\nsyscheck: {}\n"


def test_set_group_with_a_missing_file_fails_and_changes_nothing(agent):
    config, server, agent_id = agent
    server.put_file("web.yml", "a: 1\n")
    assert run(server, agent_id, "set-group", {"groups": ["web", "ghost"]}) == [
        (1, "Cannot fetch ghost.yml: the server has no such file")
    ]
    assert load_credentials(config.data_dir).groups == ()
    assert not (config.data_dir / "groups").exists()


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("set-group", None),
        ("set-group", {"groups": "web"}),
        ("set-group", {"groups": [1]}),
        ("set-group", {"groups": ["../etc"]}),
        # `$` matches before a final newline: the name must match whole (fullmatch)
        ("set-group", {"groups": ["web\n"]}),
        ("set-group", {"groups": ["web\nx"]}),
        ("uninstall", None),
    ],
)
def test_bad_arguments_and_unknown_names_are_not_valid(agent, name, args):
    _config, server, agent_id = agent
    assert run(server, agent_id, name, args) == [(1, "Command is not valid")]


def test_a_newline_group_name_changes_nothing(agent):
    config, server, agent_id = agent
    server.put_file("web\n.yml", "a: 1\n")
    assert run(server, agent_id, "set-group", {"groups": ["web\n"]}) == [
        (1, "Command is not valid")
    ]
    assert load_credentials(config.data_dir).groups == ()
    assert not (config.data_dir / "groups").exists()


def test_a_local_write_error_sends_no_local_path_to_the_server(agent):
    config, server, agent_id = agent
    server.put_file("web.yml", "a: 1\n")
    # The plain groups directory of an older version, and something in the way of moving
    # it aside: the store fails with an OSError whose text holds the data dir's path.
    (config.data_dir / "groups").mkdir()
    (config.data_dir / "groups" / "old.yml").write_text("a: 1\n")
    (config.data_dir / "groups.legacy").mkdir()
    (config.data_dir / "groups.legacy" / "x").write_text("in the way")
    results = run(server, agent_id, "set-group", {"groups": ["web"]})
    assert results == [(1, "Cannot write the group files")]
    for _code, message in results:
        assert str(config.data_dir) not in message and "Errno" not in message
    assert load_credentials(config.data_dir).groups == ()
    assert read_stored(config.data_dir).groups == []


def test_unreadable_credentials_send_no_local_path(make_config):
    """(The actions alone: with broken credentials the forwarder could not deliver it.)"""
    config = make_config()
    config.data_dir.mkdir(parents=True)
    (config.data_dir / "credentials.json").write_text("{broken")
    actions = AgentActions(config)
    for name in ("fetch-config", "set-group"):
        code, message = actions.handlers()[name](
            Command(id="c", name=name, args={"groups": ["web"]})
        )
        assert code == ResultCode.FAILURE
        assert str(config.data_dir) not in message and "credentials.json" not in message
        assert message in (
            "Cannot read the agent's groups",
            "Cannot fetch web.yml: the agent could not make the request",
        )


@pytest.mark.timeout(30)
def test_an_idle_agent_executor_stops_at_once(make_config, run_service):
    """Its main loop waits on an event, no timer: a stop request wakes it."""
    config = make_config()
    service = run_service(AgentExecutorService(config))
    wait_status(config, "agent-executor")
    assert service.stop(timeout=5) == 0


@pytest.mark.timeout(30)
def test_the_end_of_the_executors_thread_stops_the_service_with_an_error(
    make_config, run_service, monkeypatch
):
    """The executor's thread wakes the main loop as it ends (no periodic is_alive check)."""

    class Broken(Executor):
        def run(self, *, install_signals: bool = True) -> None:
            raise RuntimeError("the bus is gone")

    monkeypatch.setattr(
        agent_executor, "make_executor", lambda config, client=None: Broken(["agent"])
    )
    service = run_service(AgentExecutorService(make_config()))
    assert service.join(timeout=10) == EXIT_RUNTIME
