"""The agent line of every events body, and the host facts in it."""

from __future__ import annotations

import json
from pathlib import Path

from comms.credentials import Credentials, save_credentials, update_groups
from comms.hostinfo import host_facts
from comms.metadata import AgentLine, agent_line
from core.version import __version__
from tests.comms.helpers import FakeClock

CREDS = Credentials(uuid="u-1", key="k" * 32, name="h1", groups=("default",), server_url="s")
FACTS: dict[str, object] = {"hostname": "h1", "architecture": "x86_64", "ip": ["10.0.0.5"],
         "os": {"name": "Debian GNU/Linux", "type": "Linux", "version": "12"}}  # fmt: skip


def test_line_is_compact_sorted_and_matches_the_protocol() -> None:
    line = agent_line(CREDS, FACTS)
    assert line == (
        b'{"agent":{"groups":["default"],"host":{"architecture":"x86_64","hostname":"h1",'
        b'"ip":["10.0.0.5"],"os":{"name":"Debian GNU/Linux","type":"Linux","version":"12"}},'
        b'"id":"u-1","name":"h1","type":"Endpoint","version":"' + __version__.encode() + b'"}}'
    )
    assert b"\n" not in line and b"k" * 32 not in line


def test_host_facts_are_real_and_exclude_loopback() -> None:
    facts = host_facts()
    assert facts["hostname"] and facts["architecture"]
    assert set(facts["os"]) == {"name", "type", "version"}
    assert all(isinstance(v, str) and v for v in facts["os"].values())
    assert "127.0.0.1" not in facts["ip"] and "::1" not in facts["ip"]
    assert all("%" not in ip for ip in facts["ip"])


def test_agent_line_follows_group_changes(tmp_path: Path) -> None:
    save_credentials(tmp_path, CREDS)
    calls: list[int] = []

    def facts() -> dict[str, object]:
        calls.append(1)
        return FACTS

    clock = FakeClock()
    source = AgentLine(tmp_path, facts=facts, clock=clock, refresh=300)
    first = source.get()
    assert json.loads(first)["agent"]["groups"] == ["default"]
    assert source.get() is first  # cached
    update_groups(tmp_path, ["g1", "g2"])
    assert json.loads(source.get())["agent"]["groups"] == ["g1", "g2"]
    assert len(calls) == 1
    clock.advance(301)
    source.get()
    assert len(calls) == 2


def test_agent_line_without_credentials_is_not_enrolled(tmp_path: Path) -> None:
    import pytest

    from comms.errors import NotEnrolled

    with pytest.raises(NotEnrolled):
        AgentLine(tmp_path, facts=lambda: FACTS).get()
