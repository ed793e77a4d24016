"""`agentbus send` through a real forwarder to the reference server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.fixtures.run import clean_env, write_config


def send(config_file, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.main", "send", "--config", str(config_file), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )


@pytest.fixture
def forwarding(enrolled_agent, run_forwarder, tmp_path):
    config, _credentials, server = enrolled_agent
    run_forwarder(config)
    return write_config(config, tmp_path / "send.toml"), server


@pytest.mark.timeout(60)
def test_ndjson_on_stdin_becomes_events_on_the_server(forwarding):
    config_file, server = forwarding
    lines = "\n".join(f'{{"n": {i}}}' for i in range(1200)) + "\n"
    result = send(config_file, "--module", "myapp", "--collector", "cli", stdin=lines)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "accepted 1200 event(s)"
    server.wait_for_events(1200, module="myapp", timeout=30)
    assert sorted(e["data"]["n"] for e in server.events(module="myapp")) == list(range(1200))


@pytest.mark.timeout(60)
def test_bad_lines_are_reported_by_line_and_the_rest_is_sent(forwarding):
    config_file, server = forwarding
    stdin = '{"ok": 1}\nnot json\n[1, 2]\n{"ok": 2}\n'
    result = send(config_file, "--module", "myapp", "--collector", "cli", stdin=stdin)
    assert result.returncode == 2
    assert "line 2: not JSON" in result.stderr
    assert "line 3: wrong_type: data must be a JSON object" in result.stderr
    assert result.stdout.strip() == "accepted 2 event(s), rejected 2"
    server.wait_for_events(2, module="myapp", timeout=30)


@pytest.mark.timeout(60)
def test_stateful_argument_and_delete(forwarding):
    config_file, server = forwarding
    common = ["--module", "fim", "--collector", "file", "--stateful", "--id", "doc-1"]
    # a field the fim index does not have is refused at the bus, naming the field
    refused = send(config_file, *common, "--operation", "create", '{"path": "/etc/hosts"}')
    assert refused.returncode == 2
    assert "bad_value" in refused.stderr and "[path]" in refused.stderr, refused.stderr
    created = send(
        config_file, *common, "--operation", "create", '{"file": {"path": "/etc/hosts"}}'
    )
    assert created.returncode == 0, created.stderr
    deleted = send(config_file, *common, "--operation", "delete")
    assert deleted.returncode == 0, deleted.stderr
    server.wait_for_events(2, module="fim", timeout=30)
    ops = [e["header"]["operation"] for e in server.events(module="fim")]
    assert ops == ["create", "delete"]


def test_usage_errors_exit_2(forwarding):
    config_file, _server = forwarding
    assert send(config_file, "--module", "m", "{}").returncode == 2  # no collector
    result = send(config_file, "--module", "fim", "--collector", "file", "--stateful", "{}")
    assert result.returncode == 2
    assert "--stateful needs --id and --operation" in result.stderr


def test_no_forwarder_is_exit_1_with_one_line(make_config, tmp_path):
    config_file = write_config(make_config(), tmp_path / "send.toml")
    result = send(config_file, "--module", "m", "--collector", "c", "--timeout", "0.5", "{}")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "forwarder" in result.stderr
