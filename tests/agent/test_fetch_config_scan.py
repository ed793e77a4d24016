"""fetch-config and set-group make the SCA collector assess again: `agentbus run` (a real
subprocess), the reference server sending the command. A policy's check changes on disk
between two runs and its document reaches the server without waiting for the interval."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fixtures.common import wait_for

FAST = {"republish_interval": "200ms", "hello_grace": "2s"}


def command(server, name: str, args: dict[str, Any] | None = None) -> tuple[int, str]:
    doc = server.queue_command(server.agents()[0]["id"], name=name, args=args)
    results = wait_for(lambda: server.command_results(doc), timeout=60)
    return results[0]["code"], results[0]["message"]


def results(server) -> list[str]:
    return [d["data"]["check"]["result"] for d in server.documents("wazuh-states-sca")]


def sca_scans(agent) -> int:
    return int(agent.status()["services"]["sca"]["counters"].get("scans") or 0)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_fetch_config_makes_sca_assess_again(enrolled_agent, agent_process, sca_host, isolation):
    config, _credentials, server = enrolled_agent
    sca = {
        "enabled": True,
        "builtin_policies": False,
        "policy_dirs": [],
        "policies": [str(sca_host / "policy.yml")],
        "interval": "1h",  # the interval alone would not assess again in this test
    }
    agent = agent_process(
        config,
        agent={"isolation": isolation},
        commander=FAST,
        forwarder={"batch_interval": "50ms"},
        collectors={
            "logcollector": {"enabled": False},
            "inventory": {"enabled": False},
            "fim": {"enabled": False},
            "sca": sca,
        },
    )
    wait_for(lambda: results(server) == ["passed"], timeout=60)
    assert sca_scans(agent) == 1

    # The policy's check changes on disk; the configuration does not.
    (sca_host / "app.conf").write_text("debug = on\n")
    code, message = command(server, "fetch-config")
    assert code == 0, message
    assert message.endswith("; no service needed a reload; sca assessment started"), message
    wait_for(lambda: results(server) == ["failed"], timeout=60)
    assert sca_scans(agent) == 2

    # set-group too (a group that changes nothing of sca).
    (sca_host / "app.conf").write_text("debug = off\n")
    server.put_file("web.yml", "inventory:\n  interval: 2h\n")
    code, message = command(server, "set-group", {"groups": ["web"]})
    assert code == 0 and message.endswith("; sca assessment started"), message
    wait_for(lambda: results(server) == ["passed"], timeout=60)
    status = agent.status()["services"]["sca"]["counters"]
    assert status["scan_requests"] == {"started": 2}, json.dumps(status)
    assert agent.stop() == 0


@pytest.mark.timeout(120)
def test_fetch_config_without_sca_says_nothing_of_it(enrolled_agent, agent_process):
    config, _credentials, server = enrolled_agent
    agent_process(config, commander=FAST)  # every collector off
    code, message = command(server, "fetch-config")
    assert (code, message) == (0, "0 group file(s) fetched; no service needed a reload")
