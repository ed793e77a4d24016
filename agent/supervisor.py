"""The supervisor of ``agentbus run``: starts every built-in service, restarts a crashed one.

Every enabled service of the registry (core/registry.py) runs as a child of the
supervisor: a thread of the agent's process (``[agent] isolation = "thread"``, the
default) or its own ``agentbus <name>`` process (``"process"``), agent/children.py. Services
start in registry order: the forwarder first (everything else sends to it), which stops
last (it commits what the others sent while stopping). A child that ends on its own is
started again with a back-off that doubles up to ``MAX_RESTART_DELAY``, and resets once it
has stayed up for ``STABLE_AFTER``. The supervisor sleeps until a child ends, a restart is
due or it is asked something: an idle agent does not wake it.

The supervisor serves ``status`` (every child's state) on ``control-agent.sock`` (the
agent's group may read it) and ``restart`` (stop every service gracefully and re-execute
the agent, so that upgraded code is loaded; what the ``restart`` command of the server asks
for) on the owner-only ``admin-agent.sock`` alone (bus/control.py): a member of the
agent's group cannot restart the agent.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from pathlib import Path
from typing import Any

from loguru import logger

from agent import metrics as am
from agent.children import Child, make_children
from bus.errors import EXIT_SERVER, AgentbusError, EndpointInUse
from core import registry
from core.backoff import compute_backoff
from core.config import Config
from core.private_dirs import make_private
from core.service import Service

#: the wait before the first restart of a crashed child (seconds)
FIRST_RESTART_DELAY = 1.0
#: the longest wait between two restarts of a crashing child (seconds)
MAX_RESTART_DELAY = 30.0
#: a child up this long is healthy again: its restart delay starts over (seconds)
STABLE_AFTER = 60.0
#: how long the forwarder (a service with ``ready_first``) gets to open its sockets before
#: the others start (seconds)
FORWARDER_READY_TIMEOUT = 15.0
PID_FILE = "agentbus.pid"


class ChildGaveUp(AgentbusError):
    """A service stopped on an error that restarting cannot mend; the agent stops too."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Supervisor(Service):
    """Starts, watches and stops the agent's built-in services."""

    name = "agent"
    declared = am.AGENT

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        #: set when a child ended or a restart was asked for (and when stopping)
        self._changed = threading.Event()
        self.stop_event.also_set(self._changed)
        self.children: list[Child] = make_children(config, self._changed.set)
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
        if self.config.agent.isolation == "thread":
            self._tune_shared_process()
        if self.config.health.enabled:
            from agent.health import HealthServer

            self._health = HealthServer(self.config, self.health_snapshot, self.metrics)
            self._health.start()
            self.resources.callback(self._health.stop)

    def main_loop(self) -> None:
        self._start_all()
        while not self.stop_event.is_set():
            self._changed.clear()  # before looking: what happens while we look wakes us
            if self._restart_requested:
                logger.info("restart requested: stopping every service, then re-executing")
                self.reexec_requested = True
                return  # run() stops every child (shutdown), the CLI re-executes
            self._watch()
            self._changed.wait(self._next_restart_in())

    def shutdown(self, deadline: float) -> None:
        self._stop_all(deadline)  # then self.resources: the health endpoint, the pid file

    def _tune_shared_process(self) -> None:
        """Settings a service process would make for itself, made once for the shared one."""
        thresholds = [
            cls.gc_threshold
            for cls in (spec.load() for spec in registry.enabled(self.config))
            if cls.gc_threshold is not None
        ]
        if thresholds:
            gc.set_threshold(*max(thresholds))

    def _remove_pid_file(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._pid_file.unlink()

    # -- control -----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            **self.metrics.snapshot(),
            "pid": os.getpid(),
            "isolation": self.config.agent.isolation,
            "children": {c.name: c.describe() for c in self.children},
        }

    def control_handlers(self) -> dict[str, Any]:
        handlers = super().control_handlers()
        handlers["restart"] = self._on_restart  # not read-only: the admin socket's alone
        return handlers

    def _on_restart(self, _request: dict[str, Any]) -> dict[str, Any]:
        self._restart_requested = True
        self._changed.set()
        return {"ok": True}

    def health_snapshot(self) -> dict[str, Any]:
        return self.status()

    # -- children ----------------------------------------------------------------------
    def _start_all(self) -> None:
        for child in self.children:
            if self.stop_event.is_set():
                return
            self._start(child)
            if registry.get(child.name).ready_first and not child.wait_ready(
                FORWARDER_READY_TIMEOUT
            ):
                logger.warning(
                    "{} did not answer on its control socket yet; starting the others anyway",
                    child.name,
                )

    def _start(self, child: Child) -> None:
        child.start()
        self.metrics.inc(am.STARTS)

    def _next_restart_in(self) -> float | None:
        """Seconds until the next crashed child is due to start again (None: none is)."""
        due = [c.next_start for c in self.children if not c.running]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _watch(self) -> None:
        now = time.monotonic()
        for child in self.children:
            ended = child.reap()
            if ended is not None:
                self._on_exit(child, *ended, now)
            if self.stop_event.is_set():
                return  # stopping (a signal, or a child that gave up): start nothing
            if not child.running and now >= child.next_start:
                child.restarts += 1
                self.metrics.inc(am.RESTARTS)
                self._start(child)

    def _on_exit(self, child: Child, code: int, how: str, now: float) -> None:
        uptime = time.time() - (child.started_at or time.time())
        if uptime >= STABLE_AFTER:
            child.crashes = 0
        child.last_exit = how
        child.last_exit_at = time.time()
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
            child.stop(deadline)

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
        make_private(tmp)  # 0600 whatever the umask
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, path)
