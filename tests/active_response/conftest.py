"""The active-response executor as a real process next to a real `agentbus run` and the
reference server: commands are queued on the server and their results read back from it.

``ar_env(**settings)`` starts the agent and the executor (``python -m active_response``)
with an allowed directory ``env.programs`` (0755, root's) and ``[active_response]``
settings; ``env.program(name, body)`` writes a test program there; ``env.command(name,
args, timeout)`` queues ``active-response.<name>`` and returns its final result.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from tests.fixtures.commander import status
from tests.fixtures.common import wait_for
from tests.fixtures.run import clean_env


class ArEnv:
    def __init__(self, agent: Any, server: Any, base: Path, settings: dict[str, Any]) -> None:
        self.agent = agent
        self.server = server
        self.agent_id = server.agents()[0]["id"]
        self.programs = base / "programs"
        self.programs.mkdir(mode=0o755)
        os.chmod(self.programs, 0o755)
        self.state = base / "ar-state"
        self.out = base / "out"
        self.out.mkdir()
        raw = dict(tomli_w_loads(agent.config_file))
        raw["active_response"] = {
            "programs_dir": str(self.programs),
            "state_dir": str(self.state),
            **settings,
        }
        self.config_file = base / "active-response.toml"
        self.config_file.write_text(tomli_w.dumps(raw))
        self.log = base / "active-response.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> ArEnv:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "active_response", "--config", str(self.config_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**clean_env(), **(env or {})},
            )
        wait_for(self._served, timeout=20)
        return self

    def _served(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the executor exited:\n{self.log.read_text()}")
        live = status(self.agent.config)["executors"]
        return "active-response" in live

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return None if self.proc is None else self.proc.returncode

    def program(self, name: str, body: str, directory: Path | None = None) -> Path:
        """A shell program: ``body`` after ``#!/bin/sh``; ``$OUT`` is env.out."""
        path = (directory or self.programs) / name
        path.write_text("#!/bin/sh\nOUT=" + str(self.out) + "\n" + textwrap.dedent(body))
        os.chmod(path, 0o755)
        return path

    def queue(self, name: str, args: dict[str, Any] | None = None, timeout: int = 30) -> str:
        return str(self.server.queue_command(
            self.agent_id, name=f"active-response.{name}", args=args or {}, timeout=timeout
        ))  # fmt: skip

    def result(self, doc: str, timeout: float = 40) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            done = [r for r in self.server.command_results(doc) if r["code"] != 2]
            return done[-1] if done else None

        return wait_for(final, timeout=timeout, interval=0.1)

    def command(
        self, name: str, args: dict[str, Any] | None = None, timeout: int = 30
    ) -> tuple[int, str]:
        r = self.result(self.queue(name, args, timeout))
        return r["code"], r["message"]


def tomli_w_loads(path: Path) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(path.read_text())


@pytest.fixture
def ar_env(
    enrolled_agent: Any, agent_process: Callable[..., Any], tmp_path: Path
) -> Iterator[Callable[..., ArEnv]]:
    envs: list[ArEnv] = []

    def start(env: dict[str, str] | None = None, **settings: Any) -> ArEnv:
        config, _creds, server = enrolled_agent
        agent = agent_process(config)
        ar = ArEnv(agent, server, tmp_path, settings)
        envs.append(ar)
        return ar.start(env)

    yield start
    for ar in envs:
        ar.stop()
        print(f"----- active-response.log -----\n{ar.log.read_text(errors='replace')[-6000:]}")
