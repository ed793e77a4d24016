"""The whole agent (`agentbus run`) when authentication fails: by meaning, not by status.

A 403 "Couldn't connect to the indexer: ..." is the server in trouble, not a refusal of the
credentials: every service stays up, events are queued and all arrive afterwards, commands
are polled again, and `agentbus status` says what is going on. Only 401 "Invalid key" and
403 "Agent does not exist" stop the agent (exit 3).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from bus import Ingest, make_event
from comms.credentials import Credentials, save_credentials
from core.config import Config
from tests.fixtures.agent import EnrolledAgent
from tests.fixtures.common import wait_for, write_config
from tests.fixtures.refserver import RefServer
from tests.fixtures.run import NO_COLLECTORS, AgentProcess, clean_env

AUTH = "/api/v1/authentication"
INDEXER_DOWN = "Couldn't connect to the indexer: connection refused"
OUTAGE = 20.0
SERVICES = ("forwarder", "commander")
#: short service back-offs: after the outage only the token manager's own back-off counts
FAST = {
    "agent": {"auth_backoff_max": "2s"},
    "forwarder": {"batch_interval": "100ms", "backoff_max": "2s"},
    "commander": {"backoff_max": "2s"},
}


def agentbus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.main", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(),
    )


def send_events(config: Config, n: int, start: int = 0) -> None:
    """``n`` events numbered from ``start``, through the bus like any collector."""
    with Ingest(f"ipc://{config.agent.run_dir}/ingest.sock", timeout=10) as ingest:
        result = ingest.send(
            [make_event("test", "seq", {"seq": i}) for i in range(start, start + n)]
        )
        assert result.ok, result


def delivered_seqs(server: RefServer) -> set[int]:
    return {e["data"]["seq"] for e in server.events(module="test")}


def auth_of(report: dict[str, Any], service: str) -> dict[str, Any]:
    return dict(report["services"][service]["counters"].get("auth") or {})


def status_json(agent: AgentProcess) -> dict[str, Any]:
    """`agentbus status --json`, as an operator's script reads it."""
    done = agentbus("status", "--json", "--config", str(agent.config_file))
    assert done.returncode == 0, done.stdout + done.stderr  # every service is up
    return dict(json.loads(done.stdout))


@pytest.mark.timeout(240)
def test_a_server_hiccup_at_authentication_stops_nothing_and_loses_nothing(
    enrolled_agent: EnrolledAgent, agent_process: Any
) -> None:
    config, creds, server = enrolled_agent
    agent = agent_process(config, **FAST)
    send_events(config, 10)
    server.wait_for_events(10, module="test", timeout=30)
    wait_for(lambda: all(auth_of(agent.status(), s).get("state") == "ok" for s in SERVICES))
    pids = {name: agent.child_pid(name) for name in SERVICES}

    # The server's indexer goes away for 20 s, and every token it issued is revoked
    # (a restart with a new key pair): every service must authenticate during the outage.
    server.set_fault(status=403, path=AUTH, seconds=OUTAGE, message=INDEXER_DOWN)
    server.revoke_tokens()
    send_events(config, 200, start=10)  # accepted and queued meanwhile
    document_id = server.queue_command(creds.uuid, name="fetch-config")

    def retrying() -> bool:
        report = agent.status()
        return all(
            auth_of(report, s).get("state") == "retrying"
            and auth_of(report, s).get("message") == INDEXER_DOWN
            for s in SERVICES
        )

    wait_for(retrying, timeout=OUTAGE / 2, interval=0.2)
    report = status_json(agent)
    for service in SERVICES:
        auth = auth_of(report, service)
        assert (auth["state"], auth["message"], auth["http_status"]) == (
            "retrying", INDEXER_DOWN, 403
        )  # fmt: skip
        assert auth["failures"] >= 1
        assert auth["next_try_in"] >= 0 and auth["next_try_at"] >= report["time"] - 1
        assert "token_expires_in" in auth and "token_expires_at" in auth
    table = agentbus("status", "--config", str(agent.config_file))
    assert table.stdout.count(f"auth     RETRYING: {INDEXER_DOWN} (HTTP 403); next try") == 2
    assert server.count_events(module="test") == 10  # nothing got through the outage

    # After the outage: every event arrives, the command is polled and answered.
    server.wait_for_events(210, module="test", timeout=OUTAGE + 90)
    assert delivered_seqs(server) == set(range(210))
    [result] = wait_for(lambda: server.command_results(document_id), timeout=30)
    assert result["code"] == 0
    wait_for(lambda: all(auth_of(agent.status(), s).get("state") == "ok" for s in SERVICES))

    # Nothing stopped, nothing was restarted.
    assert agent.proc is not None and agent.proc.poll() is None
    children = agent.status()["services"]["agent"]["counters"]["children"]
    for name in SERVICES:
        assert children[name]["up"] and not children[name].get("restarts")
        assert agent.child_pid(name) == pids[name]
    assert server.request_count(path=AUTH, status=403) >= 2  # both met the outage
    assert agent.stop() == 0


def _refused(creds: Credentials, server_url: str, case: str) -> Credentials:
    if case == "invalid key":  # the server knows the agent, not this key
        return Credentials(uuid=creds.uuid, key="W" * 32, name=creds.name, server_url=server_url)
    # an agent the server does not know (removed by an administrator, say)
    return Credentials(uuid=str(uuid.uuid4()), key=creds.key, name="ghost", server_url=server_url)


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("case", "refusal"),
    [
        ("invalid key", "Invalid key (HTTP 401); enroll it again with 'agentbus register --force'"),
        ("unknown agent", "Agent does not exist (HTTP 403); enroll it again with"),
    ],
)
def test_a_refusal_of_the_credentials_stops_the_agent_with_exit_3(
    enrolled_agent: EnrolledAgent, tmp_path: Path, case: str, refusal: str
) -> None:
    config, creds, server = enrolled_agent
    save_credentials(config.data_dir, _refused(creds, server.url, case))
    path = write_config(config, tmp_path / "agent.toml", collectors=NO_COLLECTORS)
    done = subprocess.run(
        [sys.executable, "-m", "agent.main", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert done.returncode == 3, done.stderr
    # the commander's own line says what the server said; the supervisor's, why all stopped
    assert refusal in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("agentbus: commander stopped (exit 3): the server refused this agent")
    # final: asked once, not retried in a loop
    status = 401 if case == "invalid key" else 403
    assert 1 <= server.request_count(path=AUTH, status=status) <= 2
