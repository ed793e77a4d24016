"""How the supervisor hosts one built-in service: a thread of its process, or a process.

``[agent] isolation = "thread"`` (the default): every built-in service runs in a thread of
the agent's one process, each still a :class:`core.service.Service` with its own control
socket, status, counters and bus sockets. One interpreter instead of seven is most of the
agent's memory. ``"process"``: one ``agentbus <name>`` child process each, so that a crash
in native code of one service (a segfault) cannot take the others down.

Both kinds tell the supervisor when they end by calling ``on_exit`` (from their own
thread), so the supervisor sleeps until something happens instead of polling.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from loguru import logger

from bus.control import request
from bus.errors import EXIT_RUNTIME, AgentbusError, BusError
from bus.threads import mark_service, start_thread
from core import registry
from core.config import Config, ConfigError
from core.service import Service, endpoints_from_config

#: prctl(2) option: the signal a process gets when its parent dies (Linux)
PR_SET_PDEATHSIG = 1


class Child:
    """One supervised service and what the supervisor knows of it."""

    def __init__(self, name: str, config: Config, on_exit: Callable[[], None]) -> None:
        self.name = name
        self.config = config
        self.on_exit = on_exit
        self.started_at: float | None = None
        self.restarts = 0
        self.last_exit: str | None = None
        self.last_exit_at: float | None = None
        #: when a crashed child is due to start again (time.monotonic())
        self.next_start = 0.0
        #: exits since it last stayed up long enough (sets the restart delay)
        self.crashes = 0
        #: restarts asked by a configuration reload (not counted as crashes or restarts)
        self.reloads = 0
        self.reloaded_at: float | None = None

    # -- what each kind implements -------------------------------------------------------
    @property
    def running(self) -> bool:
        """Started and not yet reaped by :meth:`reap`."""
        raise NotImplementedError

    @property
    def up(self) -> bool:
        """Started and still running."""
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        raise NotImplementedError

    def _launch(self) -> None:
        """Start the service (a thread, a process)."""
        raise NotImplementedError

    def wait_ready(self, timeout: float) -> bool:
        """Wait until it answers on its control socket; False if it did not in time."""
        raise NotImplementedError

    def reap(self) -> tuple[int, str] | None:
        """Its exit code and how it ended (``"code 1"``, ``"signal SIGKILL"``) once it has;
        None while it runs. Forgets the ended run: the next :meth:`start` begins a new one.
        """
        raise NotImplementedError

    def _halt(self, deadline: float) -> None:
        """Ask it to stop gracefully; wait until ``deadline`` (time.monotonic())."""
        raise NotImplementedError

    # -- the same for every kind ----------------------------------------------------------
    def start(self) -> None:
        self.started_at = time.time()
        self.next_start = 0.0
        self._launch()

    def stop(self, deadline: float) -> None:
        """Stop it gracefully by ``deadline`` (time.monotonic()) and note how it ended."""
        if not self.running:
            return
        self._halt(deadline)
        ended = self.reap()
        self.last_exit = ended[1] if ended is not None and ended[0] >= 0 else "stopped"
        self.last_exit_at = time.time()
        logger.info("stopped {}", self.name)

    # -- shared --------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        up = self.up
        return {
            "up": up,
            "pid": self.pid if up else None,
            "since": self.started_at if up else self.last_exit_at,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "last_exit_at": self.last_exit_at,
            "reloads": self.reloads,
            "reloaded_at": self.reloaded_at,
        }


class ThreadChild(Child):
    """A service run by a thread of the agent's process."""

    def __init__(self, name: str, config: Config, on_exit: Callable[[], None]) -> None:
        super().__init__(name, config, on_exit)
        self.service: Service | None = None
        self.thread: threading.Thread | None = None
        self._code: int | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None

    @property
    def up(self) -> bool:
        return self.thread is not None and self._code is None

    @property
    def pid(self) -> int | None:
        return os.getpid() if self.up else None

    def _launch(self) -> None:
        # A new instance each time: a restarted service starts from its files, not from
        # the memory of the run that crashed.
        spec = registry.get(self.name)
        self.service = spec.load().from_args(self.config, argparse.Namespace(once=False))
        self._code = None
        self.thread = start_thread(self._run, self.name)
        logger.info("started {} (thread of pid {})", self.name, os.getpid())

    def _run(self) -> None:
        assert self.service is not None
        mark_service(self.name)  # its log lines say [<name>]
        code = EXIT_RUNTIME
        try:
            code = self.service.run()
        except AgentbusError as exc:
            if self.service.fatal is not exc:  # fail() has logged those
                logger.error("{} could not start: {}", self.name, exc)
            code = exc.exit_code
        except Exception:
            logger.exception("{} failed to start", self.name)
        finally:
            self._code = code
            self.on_exit()

    def wait_ready(self, timeout: float) -> bool:
        assert self.service is not None
        return self.service.ready.wait(timeout) and self._code is None

    def reap(self) -> tuple[int, str] | None:
        if self.thread is None or self._code is None:
            return None
        code, self.thread, self.service = self._code, None, None
        return code, f"code {code}"

    def _halt(self, deadline: float) -> None:
        assert self.thread is not None and self.service is not None
        self.service.request_stop()
        self.thread.join(max(0.1, deadline - time.monotonic()))
        if self.thread.is_alive():
            # A thread cannot be killed: it stays behind and ends with the process.
            logger.warning("{} did not stop within the deadline; leaving it behind", self.name)
            self._code = EXIT_RUNTIME


class ProcessChild(Child):
    """A service run as its own ``agentbus <name>`` process."""

    def __init__(self, name: str, config: Config, on_exit: Callable[[], None]) -> None:
        super().__init__(name, config, on_exit)
        self.argv = [sys.executable, "-m", "agent.main", name, "--config", config.source]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None

    @property
    def up(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _launch(self) -> None:
        # Children get their own process group so a Ctrl-C at the terminal reaches only
        # the supervisor, which then stops them in order. If the supervisor dies without
        # stopping them (kill -9, a crash), the kernel sends them SIGTERM: orphans would
        # keep the bus sockets and every child of the next `agentbus run` would fail.
        process = subprocess.Popen(
            self.argv, start_new_session=True, preexec_fn=_stop_with_parent(os.getpid())
        )
        self.process = process
        # One thread blocked in wait() per child: the supervisor learns of an exit at once
        # without polling.
        start_thread(self._wait, f"wait-{self.name}", process=process)
        logger.info("started {} (pid {})", self.name, process.pid)

    def _wait(self, process: subprocess.Popen[bytes]) -> None:
        process.wait()
        self.on_exit()

    def wait_ready(self, timeout: float) -> bool:
        # `status` is read-only: the group-accessible status socket answers it
        endpoint = endpoints_from_config(self.config).control(self.name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.up:
            try:
                request(endpoint, {"cmd": "status"}, timeout=0.5)
                return True
            except BusError:
                continue
        return False

    def reap(self) -> tuple[int, str] | None:
        if self.process is None or self.process.poll() is None:
            return None
        code = self.process.returncode
        self.process = None
        return code, f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"

    def _halt(self, deadline: float) -> None:
        proc = self.process
        assert proc is not None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("{} did not stop within the deadline; killing it", self.name)
                proc.kill()
                proc.wait()


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


KINDS: dict[str, type[Child]] = {"thread": ThreadChild, "process": ProcessChild}


def make_children(config: Config, on_exit: Callable[[], None]) -> list[Child]:
    """One child per service this configuration asks for, in start order."""
    unknown = sorted(set(config.agent.own_process) - set(registry.names()))
    if unknown:
        raise ConfigError(
            f"agent.own_process: {', '.join(unknown)} is no built-in service "
            f"({', '.join(registry.names())})"
        )
    return [make_child(spec.name, config, on_exit) for spec in registry.enabled(config)]


def make_child(name: str, config: Config, on_exit: Callable[[], None]) -> Child:
    """The child of service ``name``: a process if ``own_process`` says so, else the kind
    ``isolation`` asks for."""
    kind = ProcessChild if name in config.agent.own_process else KINDS[config.agent.isolation]
    return kind(name, config, on_exit)
