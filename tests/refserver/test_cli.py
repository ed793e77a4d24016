"""`agentbus server` as a user runs it: serving options and the operator actions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from starlette.requests import Request

from refserver.auth import require_loopback
from refserver.errors import HTTPError
from tests.fixtures.refserver import REPO, free_port
from tests.fixtures.run import clean_env
from tests.refserver.helpers import enroll, management_token, stateless_pair


def agentbus(
    *args: str, stdin: bytes | None = None, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.main", "server", *args],
        cwd=cwd,
        input=stdin.decode() if stdin else None,
        stdin=None if stdin else subprocess.DEVNULL,  # never a password prompt
        capture_output=True,
        text=True,
        timeout=30,
        env=env if env is not None else clean_env(),
    )


def at(server) -> list[str]:
    """Where the server is, and its data dir, where the CLI finds the admin token."""
    return ["--url", server.url, "--data-dir", str(server.data_dir)]


def test_operator_actions_drive_a_running_server(refserver) -> None:
    url = at(refserver)
    agent = enroll(refserver.url)
    assert agent.post("stateless", stateless_pair("fim", "file")).status_code == 204

    out = agentbus(
        "command",
        *url,
        "--agent",
        agent.id,
        "--name",
        "set-group",
        "--args",
        '{"groups":["web"]}',
        "--timeout",
        "60",
    )
    assert out.returncode == 0, out.stderr
    doc = out.stdout.strip()
    [command] = agent.poll().json()["commands"]
    assert command["document_id"] == doc
    assert command["action"]["args"] == {"groups": ["web"]} and command["timeout"] == 60

    out = agentbus("events", *url, "--module", "fim", "--count")
    assert out.returncode == 0 and out.stdout.strip() == "1"
    out = agentbus("events", *url, "--module", "fim")
    [event] = [json.loads(line) for line in out.stdout.splitlines()]
    assert event["collector"] == "file" and event["agent_id"] == agent.id

    out = agentbus("agents", *url, "--json")
    assert [a["id"] for a in json.loads(out.stdout)] == [agent.id]
    out = agentbus("commands", *url)
    assert doc in out.stdout and "sent" in out.stdout

    out = agentbus("fault", *url, "--status", "503", "--count", "1")
    assert out.returncode == 0 and json.loads(out.stdout)["status"] == 503
    assert agent.post("stateless", stateless_pair()).status_code == 503
    agentbus("fault", *url, "--status", "500")
    assert agentbus("fault", *url, "--clear").returncode == 0
    assert agent.post("stateless", stateless_pair()).status_code == 204

    out = agentbus("put-file", *url, "web.yml", "-", stdin=b"labels: [web]\n")
    assert out.returncode == 0
    assert (refserver.data_dir / "files" / "web.yml").read_bytes() == b"labels: [web]\n"
    assert agentbus("revoke-tokens", *url).returncode == 0
    assert agent.post("stateless", stateless_pair()).status_code == 403


def test_operator_errors_are_one_line_and_exit_3(refserver) -> None:
    out = agentbus("command", *at(refserver), "--agent", "nobody", "--name", "restart")
    assert out.returncode == 3
    assert out.stderr.strip() == "agentbus server: Agent nobody does not exist (HTTP 404)"
    out = agentbus("agents", "--url", f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 3 and "cannot reach" in out.stderr


def test_bad_args_json_is_a_usage_error(refserver) -> None:
    out = agentbus("command", "--url", refserver.url, "--agent", "x", "--name", "n", "--args", "{")
    assert out.returncode == 2 and "--args is not JSON" in out.stderr


def test_tls_cert_needs_tls_key(tmp_path) -> None:
    out = agentbus("--data-dir", str(tmp_path), "--tls-cert", str(tmp_path / "c.pem"))
    assert out.returncode == 2 and "--tls-cert and --tls-key go together" in out.stderr


def test_port_in_use_is_a_clear_error(refserver, tmp_path) -> None:
    out = agentbus("--data-dir", str(tmp_path), "--port", str(refserver.port))
    assert out.returncode == 1 and "cannot listen" in out.stderr


def test_start_line_says_where_and_who(refserver) -> None:
    line = refserver.log().splitlines()[0]
    assert f"listening on {refserver.url}" in line
    assert "management user 'wazuh', password from $AGENTBUS_SERVER_PASSWORD" in line
    assert f"admin token in {refserver.token_file}" in line


def test_self_signed_https_verifies_with_its_certificate(refserver_factory) -> None:
    server = refserver_factory(self_signed=True)
    assert server.url.startswith("https://") and server.ca_file and server.ca_file.exists()
    r = requests.post(
        f"{server.url}/security/user/authenticate",
        auth=("wazuh", "wazuh"),
        verify=str(server.ca_file),
        timeout=10,
    )
    assert r.status_code == 200
    assert oct((server.data_dir / "tls" / "server.key").stat().st_mode & 0o777) == "0o600"


def test_management_api_on_a_second_port(refserver_factory) -> None:
    port = free_port()
    server = refserver_factory(extra_args=["--management-port", str(port)])
    assert management_token(f"http://127.0.0.1:{port}")
    assert management_token(server.url)


def _request_from(host: str, server) -> Request:
    class _App:
        class state:  # noqa: N801 - mimics app.state
            pass

    _App.state.server = server  # type: ignore[attr-defined]
    return Request({"type": "http", "client": (host, 5555), "app": _App, "headers": []})


def test_admin_api_refuses_clients_that_are_not_on_loopback() -> None:
    class Options:
        admin_any_host = False

    class State:
        options = Options()

    require_loopback(_request_from("127.0.0.1", State()))
    require_loopback(_request_from("::1", State()))
    try:
        require_loopback(_request_from("10.1.2.3", State()))
    except HTTPError as exc:
        assert exc.status == 403
    else:
        raise AssertionError("a remote client reached the admin API")
    Options.admin_any_host = True
    require_loopback(_request_from("10.1.2.3", State()))


def test_given_certificate_and_key_serve_https(refserver_factory, tmp_path) -> None:
    from refserver.tls import self_signed

    cert, key = self_signed(tmp_path / "mine", "127.0.0.1")
    server = refserver_factory(tls_cert=cert, tls_key=key)
    assert server.url.startswith("https://")
    r = requests.post(
        f"{server.url}/security/user/authenticate",
        auth=("wazuh", "wazuh"),
        verify=str(cert),
        timeout=10,
    )
    assert r.status_code == 200
    with pytest.raises(requests.ConnectionError):  # plain HTTP is not spoken there
        requests.get(server.url.replace("https://", "http://") + "/admin/health", timeout=10)


def test_fault_message_from_the_command_line(refserver) -> None:
    agent = enroll(refserver.url)
    text = "Couldn't get key pair: disk full"
    out = agentbus(
        "fault",
        *at(refserver),
        "--status",
        "403",
        "--count",
        "1",
        "--path",
        "/api/v1/authentication",
        "--message",
        text,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["message"] == text
    r = requests.post(
        f"{refserver.url}/api/v1/authentication",
        json={"uuid": agent.id, "key": agent.key},
        timeout=10,
    )
    assert r.status_code == 403 and r.json() == {"message": text, "code": 403}


def test_stats_show_the_swallowed_stateless_lines(refserver) -> None:
    agent = enroll(refserver.url)
    lookalike = stateless_pair("audit", "auditd")[0]  # a data line with module and collector
    assert agent.post("stateless", [stateless_pair()[0], lookalike]).status_code == 204
    out = agentbus("stats", *at(refserver))
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert stats["stateless_swallowed"] == 1 and stats["documents_refused"] == 0


def test_relaxing_flags_reach_the_server(refserver_factory) -> None:
    import uuid6

    from tests.refserver.helpers import enrollment_body

    server = refserver_factory(
        extra_args=["--allow-uuid7", "--no-strict-documents", "--upsert-documents"]
    )
    token = management_token(server.url)
    r = requests.post(
        f"{server.url}/agents",
        json=enrollment_body(str(uuid6.uuid7())),
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    agent = enroll(server.url)
    head = '{"id":"d","module":"fim","collector":"file","operation":"create"}'
    results = agent.post("stateful", [head, "{}", head, '{"x":1}']).json()["results"]
    assert [(i["result"], i["status"]) for i in results] == [("created", 201), ("updated", 200)]
