"""The supervisor of ``agentbus run``: one child process per service, restarted on a crash.

One process per enabled service of the registry (core/registry.py), each started as
``python -m agent.main <name> --config F``, so that a crash in a collector cannot take the
forwarder down. Services start in registry order: the forwarder first (everything else
sends to it), which stops last (it commits what the others sent while stopping). A child
that exits on its own is restarted with a back-off that doubles up to
``MAX_RESTART_DELAY``, and resets once it has stayed up for ``STABLE_AFTER``.

The supervisor serves ``control-agent.sock``: ``status`` (every child's state) and
``restart`` (stop every child gracefully and start them again; what the ``restart`` command
of the server asks for).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from agent import metrics as am
from bus.control import request
from bus.errors import EXIT_SERVER, AgentbusError, BusError, EndpointInUse
from core import registry
from core.backoff import compute_backoff
from core.config import Config
from core.service import Service

#: the wait before the first restart of a crashed child (seconds)
FIRST_RESTART_DELAY = 1.0
#: the longest wait between two restarts of a crashing child (seconds)
MAX_RESTART_DELAY = 30.0
#: a child up this long is healthy again: its restart delay starts over (seconds)
STABLE_AFTER = 60.0
#: how often children are checked (seconds)
CHECK_INTERVAL = 0.2
#: how long the forwarder (a service with ``ready_first``) gets to open its sockets before
#: the others start (seconds)
FORWARDER_READY_TIMEOUT = 15.0
PID_FILE = "agentbus.pid"


class ChildGaveUp(AgentbusError):
    """A service stopped on an error that restarting cannot mend; the agent stops too."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Child:
    """One supervised service and what the supervisor knows of it."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float | None = None
    restarts: int = 0
    last_exit: str | None = None
    last_exit_at: float | None = None
    next_start: float = 0.0
    #: exits since it last stayed up for STABLE_AFTER (sets the restart delay)
    crashes: int = 0
    history: list[str] = field(default_factory=list)

    @property
    def up(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def describe(self) -> dict[str, Any]:
        return {
            "up": self.up,
            "pid": self.process.pid if self.up and self.process else None,
            "since": self.started_at if self.up else self.last_exit_at,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "last_exit_at": self.last_exit_at,
        }


#: prctl(2) option: the signal a process gets when its parent dies (Linux)
PR_SET_PDEATHSIG = 1


def _stop_with_parent(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel for SIGTERM when ``parent`` dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, not after
    sigterm = int(signal.SIGTERM)

    def ask() -> None:
        prctl(PR_SET_PDEATHSIG, sigterm)
        if os.getppid() != parent:  # the parent died before we asked
            os._exit(1)

    return ask


def child_commands(config: Config) -> list[tuple[str, list[str]]]:
    """(name, argv) of every service this configuration asks for, in start order.

    Every child is started the one way a service is started: ``agentbus <name>``
    (agent/cli/service.py), for each enabled service of the registry (core/registry.py).
    """
    return [
        (spec.name, [sys.executable, "-m", "agent.main", spec.name, "--config", config.source])
        for spec in registry.enabled(config)
    ]


class Supervisor(Service):
    """Starts, watches and stops the agent's child processes."""

    name = "agent"
    declared = am.AGENT

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.children = [Child(name, argv) for name, argv in child_commands(config)]
        self._restart_requested = False
        self._pid_file = Path(config.agent.run_dir) / PID_FILE
        self._health: Any = None

    # -- lifecycle ---------------------------------------------------------------------
    def startup(self) -> None:
        from comms.credentials import load_credentials

        load_credentials(self.config.data_dir)  # NotEnrolled (exit 2) says how to enroll
        self.config.run_dir.mkdir(mode=0o770, parents=True, exist_ok=True)
        self.config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._write_pid_file()
        self.resources.callback(self._remove_pid_file)
        if self.config.health.enabled:
            from agent.health import HealthServer

            self._health = HealthServer(self.config, self.health_snapshot)
            self._health.start()
            self.resources.callback(self._health.stop)

    def main_loop(self) -> None:
        self._start_all()
        while not self.stop_event.wait(CHECK_INTERVAL):
            if self._restart_requested:
                self._restart_requested = False
                logger.info("restart requested: stopping every service and starting them again")
                self._stop_all(time.monotonic() + self.config.agent.stop_timeout)
                self._start_all()
                continue
            self._watch()

    def shutdown(self, deadline: float) -> None:
        self._stop_all(deadline)  # then self.resources: the health endpoint, the pid file

    def _remove_pid_file(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._pid_file.unlink()

    # -- control -----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            **self.metrics.snapshot(),
            "pid": os.getpid(),
            "children": {c.name: c.describe() for c in self.children},
        }

    def control_handlers(self) -> dict[str, Any]:
        handlers = super().control_handlers()
        handlers["restart"] = self._on_restart
        return handlers

    def _on_restart(self, _request: dict[str, Any]) -> dict[str, Any]:
        self._restart_requested = True
        return {"ok": True}

    def health_snapshot(self) -> dict[str, Any]:
        return self.status()

    # -- children ----------------------------------------------------------------------
    def _start_all(self) -> None:
        for child in self.children:
            if self.stop_event.is_set():
                return
            self._start(child)
            if registry.get(child.name).ready_first:
                self._wait_ready(child.name, child)

    def _start(self, child: Child) -> None:
        # Children get their own process group so a Ctrl-C at the terminal reaches only
        # the supervisor, which then stops them in order. If the supervisor dies without
        # stopping them (kill -9, a crash), the kernel sends them SIGTERM: orphans would
        # keep the bus sockets and every child of the next `agentbus run` would fail.
        child.process = subprocess.Popen(
            child.argv, start_new_session=True, preexec_fn=_stop_with_parent(os.getpid())
        )
        child.started_at = time.time()
        child.next_start = 0.0
        logger.info("started {} (pid {})", child.name, child.process.pid)
        self.metrics.inc(am.STARTS)

    def _wait_ready(self, service: str, child: Child) -> None:
        endpoint = self.endpoints.control(service)
        deadline = time.monotonic() + FORWARDER_READY_TIMEOUT
        while time.monotonic() < deadline and child.up and not self.stop_event.is_set():
            try:
                request(endpoint, {"cmd": "status"}, timeout=0.5)
                return
            except BusError:
                continue
        logger.warning("{} did not answer on {} yet; starting the others anyway", service, endpoint)

    def _watch(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                self._on_exit(child, now)
            if self.stop_event.is_set():
                return  # stopping (a signal, or a child that gave up): start nothing
            if child.process is None and now >= child.next_start:
                child.restarts += 1
                self.metrics.inc(am.RESTARTS)
                self._start(child)

    def _on_exit(self, child: Child, now: float) -> None:
        assert child.process is not None
        code = child.process.returncode
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"
        uptime = time.time() - (child.started_at or time.time())
        if uptime >= STABLE_AFTER:
            child.crashes = 0
        child.last_exit = how
        child.last_exit_at = time.time()
        child.process = None
        if code == EXIT_SERVER:
            # The server refused our credentials: a restart cannot mend that, and a loop of
            # restarts would hammer the server. Stop, and say why. (Exit 2 is restarted: the
            # config was checked at start, and a socket still held by a child of a previous
            # run that is shutting down is a reason to try again, not to give up.)
            self.fail(
                ChildGaveUp(
                    f"{child.name} stopped (exit {code}): the server refused this agent's "
                    "credentials; see its log, and enroll again with 'agentbus register "
                    "--force' if the agent was removed",
                    code,
                )
            )
            return
        child.crashes += 1
        # No jitter: one supervisor restarts its own children, there is nobody to spread
        # out from, and a random short delay would restart a crashing child in a tight loop.
        delay = compute_backoff(
            child.crashes, initial=FIRST_RESTART_DELAY, maximum=MAX_RESTART_DELAY, jitter="none"
        )
        child.next_start = now + delay
        message = f"{child.name} exited with {how} after {uptime:.1f}s; restarting in {delay:.0f}s"
        logger.error(message)
        self.metrics.error(message)

    def _stop_all(self, deadline: float) -> None:
        # Reverse start order: collectors and executors first, the forwarder last.
        for child in reversed(self.children):
            self._stop(child, deadline)

    def _stop(self, child: Child, deadline: float) -> None:
        proc = child.process
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("{} did not stop within the deadline; killing it", child.name)
                proc.kill()
                proc.wait()
        child.last_exit = f"code {proc.returncode}" if proc.returncode >= 0 else "stopped"
        child.last_exit_at = time.time()
        child.process = None
        logger.info("stopped {}", child.name)

    def _write_pid_file(self) -> None:
        path = self._pid_file
        try:
            other = int(path.read_text().strip())
            os.kill(other, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            pass  # no pid file, or a stale one whose process is gone
        except PermissionError:
            raise EndpointInUse(f"agentbus is already running (pid {other}, {path})") from None
        else:
            if other != os.getpid():
                raise EndpointInUse(f"agentbus is already running (pid {other}, {path})")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, path)
