"""Fixtures of the whole-system tests: an enrolled agent run by `agentbus run`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.config import Config
from tests.fixtures.agent import EnrolledAgent
from tests.fixtures.run import AgentProcess
from tests.fixtures.system import AGENT, COMMANDER, FIGURES, FORWARDER

#: log text that only an unexpected exception produces
UNEXPECTED = ("Traceback", "stopped on an unexpected error", "failed unexpectedly")


@pytest.fixture(params=["thread", "process"])
def isolation(request: pytest.FixtureRequest) -> str:
    """``[agent] isolation``: every system test runs with the built-in services as threads
    of the agent's process (the default); those marked ``both_isolations`` (where process
    boundaries matter: kill -9 of each process, hostile clients at each socket) also with a
    process each — every test does with ``SYSTEM_ISOLATION=all`` (CI time: about 7 minutes
    instead of 4)."""
    both = request.node.get_closest_marker("both_isolations") is not None
    if request.param == "process" and not both and os.environ.get("SYSTEM_ISOLATION") != "all":
        pytest.skip("isolation = process: run with SYSTEM_ISOLATION=all")
    return str(request.param)


@pytest.fixture
def start_agent(
    enroll_agent: Callable[..., EnrolledAgent],
    agent_process: Callable[..., AgentProcess],
    isolation: str,
) -> Iterator[Callable[..., tuple[AgentProcess, EnrolledAgent]]]:
    """``start_agent(before_start=None, **sections)``: enroll with the test's server and run
    `agentbus run` with the system tests' quick settings (``sections`` override them);
    ``before_start(config)`` prepares the data dir first."""

    started: list[AgentProcess] = []

    def start(
        before_start: Callable[[Config], None] | None = None, **sections: dict[str, Any]
    ) -> tuple[AgentProcess, EnrolledAgent]:
        merged: dict[str, dict[str, Any]] = {
            "agent": {**AGENT, "isolation": isolation},
            "forwarder": dict(FORWARDER),
            "commander": dict(COMMANDER),
        }
        for name, values in sections.items():
            merged.setdefault(name, {}).update(values)
        enrolled = enroll_agent(sections=merged)
        if before_start is not None:
            before_start(enrolled.config)
        agent = agent_process(enrolled.config)
        started.append(agent)
        return agent, enrolled

    yield start
    # Whatever the fault, no service may have met an error it did not expect.
    for agent in started:
        text = agent.log.read_text(errors="replace") if agent.log.exists() else ""
        bad = [line for line in text.splitlines() if any(m in line for m in UNEXPECTED)]
        assert not bad, f"unexpected errors in {agent.log}:\n" + "\n".join(bad[:20])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("system test figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
