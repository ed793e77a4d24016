"""`agentbus quarantine list|retry|drop` against a running forwarder (real control socket)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bus.client import Ingest
from core.config import Config
from core.service import endpoints_from_config
from tests.fixtures.agent import EnrolledAgent
from tests.fixtures.common import wait_for
from tests.fixtures.forwarder import REPO, ForwarderThread, write_config
from tests.forwarder.helpers import FAST, fim


def cli(config_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.main", "quarantine", "--config", str(config_file), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_list_retry_and_drop_quarantined_events(
    enroll_agent: Callable[..., EnrolledAgent],
    run_forwarder: Callable[[Config], ForwarderThread],
    tmp_path: Path,
) -> None:
    agent = enroll_agent(sections={"forwarder": FAST})
    fw = run_forwarder(agent.config)
    config_file = write_config(tmp_path / "cli.toml", agent.config)
    # The server refuses the next 4 stateful requests with 400: the batch of 3 is bisected
    # ([1], [2, 3] → [2], [3]) and the first two events are quarantined one by one.
    agent.server.set_fault(status=400, count=4, path="/api/v1/events/stateful")
    with Ingest(endpoints_from_config(agent.config).ingest) as ingest:
        events = [fim(1, "create", doc="gone-1"), fim(2, "create", doc="gone-2"), fim(3, "create")]
        assert ingest.send(events).ok
    wait_for(lambda: fw.status()["quarantine_events"] == 2 and fw.status()["queue_events"] == 0)
    agent.server.wait_for_events(1, module="fim")

    listed = cli(config_file, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert doc["total"] == 2
    ids = [e["id"] for e in doc["entries"]]
    assert all(e["status"] == 400 and e["kind"] == "stateful" for e in doc["entries"])
    human = subprocess.run(
        [sys.executable, "-m", "agent.main", "quarantine", "list", "--config", str(config_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "2 event(s) in quarantine" in human.stdout and "gone-1" in human.stdout
    status = subprocess.run(
        [sys.executable, "-m", "agent.main", "status", "--config", str(config_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "quarantine 2 events the server refused" in status.stdout

    # the server takes it now: retrying gone-1 delivers it
    retried = cli(config_file, "retry", str(ids[0]))
    assert retried.returncode == 0 and "moved 1 event(s)" in retried.stdout
    agent.server.wait_for_events(2, module="fim")
    wait_for(lambda: fw.status()["quarantine_events"] == 1 and fw.status()["queue_events"] == 0)

    dropped = cli(config_file, "drop", "--all")
    assert dropped.returncode == 0 and "dropped 1 event(s)" in dropped.stdout
    assert fw.status()["quarantine_events"] == 0

    missing = cli(config_file, "drop", "12345")
    assert missing.returncode == 2 and "not in the quarantine" in missing.stderr
    usage = cli(config_file, "retry")
    assert usage.returncode == 2


def test_quarantine_cli_says_when_the_forwarder_is_not_running(
    make_config: Callable[..., Config],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # In process, with the control request's 10 s wait cut short: nobody answers either way.
    import bus.control
    from agent.main import main

    real_request = bus.control.request

    def impatient(endpoint: str, message: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return real_request(endpoint, message, **{**kwargs, "timeout": 0.2})

    monkeypatch.setattr(bus.control, "request", impatient)
    config_file = write_config(tmp_path / "cli.toml", make_config())
    assert main(["quarantine", "--config", str(config_file), "list"]) == 1
    assert "forwarder is not running" in capsys.readouterr().err
