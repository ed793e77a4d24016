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
for) and ``reload`` on the owner-only ``admin-agent.sock`` alone (bus/control.py): a member
of the agent's group can neither restart nor reconfigure the agent.

``reload`` (asked by the agent executor once set-group or fetch-config stored a new set of
group files): the configuration is built again — the local file as read at start, the
stored group files, the environment (core/config.py) — and compared with the one in force,
section by section. Only the services whose section changed are restarted (a thread gets
a new service instance with the new configuration, a process reads it when it starts); a
service switched on or off is started or stopped; the others keep running untouched. A
restarted service stops gracefully: the forwarder commits what it acknowledged, a
collector saves its offsets and state, and starts again from them. The answer names what
was restarted, started and stopped. The reload runs in the main loop, between two watches
of the children, so it never races a crash restart.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from agent import metrics as am
from agent.children import Child, make_child, make_children
from bus.errors import EXIT_SERVER, AgentbusError, EndpointInUse
from core import registry
from core.backoff import compute_backoff
from core.config import Config, ConfigError, reload_config
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
#: how long a reload request waits for the main loop to take it up, beyond the stops
RELOAD_MARGIN = 15.0


@dataclass
class ReloadRequest:
    """A ``reload`` asked on the admin socket, done by the main loop."""

    done: threading.Event = field(default_factory=threading.Event)
    reply: dict[str, Any] = field(default_factory=dict)


def section_of(config: Config, spec: registry.ServiceSpec) -> Any:
    """The configuration section of a service (``collectors.fim`` → its settings)."""
    value: Any = config
    for part in spec.section.split("."):
        value = getattr(value, part)
    return value


def reload_plan(old: Config, new: Config) -> dict[str, str]:
    """What a reload does, by service: ``restart``, ``start`` or ``stop``; the services
    not named keep running."""
    plan: dict[str, str] = {}
    for spec in registry.SERVICES:
        was, now = spec.enabled(old), spec.enabled(new)
        if was and not now:
            plan[spec.name] = "stop"
        elif now and not was:
            plan[spec.name] = "start"
        elif now and section_of(old, spec) != section_of(new, spec):
            plan[spec.name] = "restart"
    return plan


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
        self._reload_lock = threading.Lock()
        self._reload: ReloadRequest | None = None
        self.last_reload: dict[str, Any] | None = None
        self._pid_file = Path(config.agent.run_dir) / PID_FILE
        self._health: Any = None

    # -- lifecycle ---------------------------------------------------------------------
    def startup(self) -> None:
        from comms.credentials import load_credentials

        load_credentials(self.config.data_dir)  # NotEnrolled (exit 2) says how to enroll
        self.config.run_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
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
            self._take_reload()
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
            "config": {
                "groups": list(self.config.groups),
                "groups_applied_at": self.config.groups_applied_at,
                "groups_skipped": dict(self.config.groups_skipped),
                "last_reload": self.last_reload,
            },
        }

    def control_handlers(self) -> dict[str, Any]:
        handlers = super().control_handlers()
        handlers["restart"] = self._on_restart  # not read-only: the admin socket's alone
        handlers["reload"] = self._on_reload  # the same
        return handlers

    def _on_reload(self, _request: dict[str, Any]) -> dict[str, Any]:
        # Runs in the control thread: hands the work to the main loop and waits for it.
        with self._reload_lock:
            request = ReloadRequest()
            self._reload = request
            self._changed.set()
            limit = 2 * self.config.agent.stop_timeout + FORWARDER_READY_TIMEOUT + RELOAD_MARGIN
            deadline = time.monotonic() + limit
            # in slices: a main loop that ended (the agent stopping) never takes it up
            while not request.done.wait(0.2):
                if self.stop_event.is_set():
                    return {"ok": False, "error": "the agent is stopping"}
                if time.monotonic() > deadline:
                    return {"ok": False, "error": "the reload did not finish in time"}
            return request.reply

    def _take_reload(self) -> None:
        request, self._reload = self._reload, None
        if request is None:
            return
        try:
            request.reply = self.reload()
        except ConfigError as exc:
            logger.error("reload: the configuration is not valid: {}", exc)
            request.reply = {"ok": False, "error": str(exc)}
        except Exception as exc:
            logger.exception("reload failed")
            request.reply = {"ok": False, "error": f"reload failed: {type(exc).__name__}"}
        finally:
            request.done.set()

    def reload(self) -> dict[str, Any]:
        """Apply the stored group files: restart, start or stop the services they change."""
        new = reload_config(self.config)
        plan = reload_plan(self.config, new)
        deadline = time.monotonic() + self.config.agent.stop_timeout
        by_name = {c.name: c for c in self.children}
        # Stops in reverse start order (the forwarder last), as at shutdown.
        for child in reversed(self.children):
            if plan.get(child.name) in ("stop", "restart"):
                child.stop(deadline)
        self.config = new
        for child in self.children:
            child.config = new  # a thread's next start builds its service from it
        for spec in registry.enabled(new):
            if plan.get(spec.name) == "start":
                by_name[spec.name] = make_child(spec.name, new, self._changed.set)
        self.children = [by_name[s.name] for s in registry.enabled(new)]  # the stopped left out
        for child in self.children:
            if plan.get(child.name) not in ("start", "restart") or self.stop_event.is_set():
                continue
            if plan[child.name] == "restart":
                child.reloads += 1
                child.reloaded_at = time.time()
            self._start(child)
            if not child.wait_ready(FORWARDER_READY_TIMEOUT):
                logger.warning("reload: {} did not answer on its control socket yet", child.name)
        done = {
            action: [n for n, a in plan.items() if a == verb]
            for action, verb in (
                ("restarted", "restart"),
                ("started", "start"),
                ("stopped", "stop"),
            )
        }
        reply: dict[str, Any] = {"ok": True, "groups": list(new.groups), **done}
        self.last_reload = {**reply, "at": time.time()}
        logger.info(
            "reload: groups {}; restarted {}, started {}, stopped {}",
            ", ".join(new.groups) or "(none)",
            *(", ".join(done[k]) or "none" for k in ("restarted", "started", "stopped")),
        )
        return reply

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
