"""The one lifecycle every long-running agentbus service follows.

``Service(config).run()`` = ``startup()`` → ``main_loop()`` → ``shutdown(deadline)``, then
``resources`` is closed. ``startup()`` registers what it opens (sockets, files, threads) on
``self.resources``, a :class:`contextlib.ExitStack`, as it opens it: when ``startup()``
fails half-way, exactly what it had opened is released (last opened, first released) and
the error goes on to the caller; after a run, it is released after ``shutdown``. A
callback that needs the stop deadline reads ``self.stop_deadline``.

Loops wait on ``self.stop_event.wait(timeout)``, never on a bare sleep, so a signal acts at
once; the timeout is the real next deadline (the next scan, the next retry), never a tick,
so an idle service does not wake. A loop that waits for something else too registers its
own event with ``stop_event.also_set(event)``. Signal handlers only set flags: the first
SIGTERM/SIGINT asks for a graceful stop, a second one exits at once (whatever is committed
to disk stays there). A service may run in a thread of the agent's process (``[agent]
isolation = "thread"``): it then installs no signal handler, the supervisor stops it.

An error no retry can mend (the server refuses our key) takes one path, whichever thread
meets it: :meth:`Service.fail`; ``run()`` raises it after a clean stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from loguru import logger

from bus.control import ControlServer
from bus.endpoints import Endpoints
from bus.errors import EXIT_OK, EXIT_RUNTIME, AgentbusError
from bus.sockets import SocketOptions
from bus.threads import StopEvent
from core.config import Config, ConfigError
from core.metrics import CONTROL_REJECTED, SERVICE, MetricSet, Registry


class Service:
    """Base class: subclasses set ``name`` and fill in the three lifecycle steps."""

    name = "service"
    #: this service's metrics (core/metrics.py), declared once in its package's metrics.py
    declared: MetricSet = SERVICE
    #: ``gc.set_threshold`` arguments for the process running this service (None: Python's)
    gc_threshold: tuple[int, int, int] | None = None

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stop_event = StopEvent()
        #: set once the service answers on its control socket, or once run() returned
        #: (a service hosted as a thread: the supervisor starts the others after this one)
        self.ready = threading.Event()
        self.metrics = Registry(self.declared)
        self.endpoints = endpoints_from_config(config)
        self.socket_options = socket_options_from_config(config)
        #: what startup() opened, released when it fails and after shutdown()
        self.resources = contextlib.ExitStack()
        #: the stop deadline (``time.monotonic()``), set once stopping began
        self.stop_deadline = 0.0
        #: set by the service when its process should be started again once it stopped
        #: (the commander's restart without a supervisor); the runner re-executes it
        self.reexec_requested = False
        self._signals = 0
        self._control: ControlServer | None = None
        self._fail_lock = threading.Lock()
        #: set by fail(): run() raises it after a clean shutdown
        self.fatal: AgentbusError | None = None

    @classmethod
    def from_args(cls, config: Config, args: Any) -> Service:
        """The service as ``agentbus <name>`` builds it from its command-line arguments."""
        return cls(config)

    # -- lifecycle -------------------------------------------------------------------
    def startup(self) -> None:
        """Open sockets, files and connections; raise an AgentbusError to refuse to start."""

    def main_loop(self) -> None:
        """Work until ``stop_event`` is set."""
        self.stop_event.wait()

    def shutdown(self, deadline: float) -> None:
        """Release everything before ``deadline`` (a ``time.monotonic()`` value)."""

    def status(self) -> dict[str, Any]:
        """Every metric and fact of this service (served on the control socket)."""
        return self.metrics.snapshot()

    def control_handlers(self) -> dict[str, Any]:
        """Control commands this service answers; subclasses may add to it."""
        return {
            "status": lambda _req: {
                "ok": True,
                "service": self.name,
                **self.status(),
                **self._control_figures(),
            }
        }

    def _control_figures(self) -> dict[str, Any]:
        """Bad requests on the control socket, by reason."""
        rejected = dict(self._control.rejected) if self._control is not None else {}
        self.metrics.set_many(CONTROL_REJECTED, rejected)
        return {CONTROL_REJECTED.name: dict(sorted(rejected.items()))}

    # -- running ---------------------------------------------------------------------
    def run(self) -> int:
        """Run the whole lifecycle in the foreground; returns the process exit code.

        An error of ``startup()`` is raised once what it opened is released; an error of
        ``main_loop()`` is logged and makes the exit code 1 (after a graceful stop).
        """
        self.install_signal_handlers()
        started = False
        code = EXIT_OK
        try:
            self.startup()
            started = True
            self._control = ControlServer(
                self.endpoints.control(self.name),
                self.control_handlers(),
                options=self.socket_options,
            )
            self._control.start()
            self.ready.set()
            logger.info("{} started (pid {})", self.name, os.getpid())
            self.main_loop()
        except Exception:
            if not started:
                raise  # released below; the CLI prints an AgentbusError as one line
            logger.exception("{} stopped on an unexpected error", self.name)
            code = EXIT_RUNTIME
        finally:
            self.stop_event.set()  # threads started by startup() wait on it
            self.stop_deadline = time.monotonic() + self.config.agent.stop_timeout
            try:
                if started:
                    self.shutdown(self.stop_deadline)
            finally:
                try:
                    self.resources.close()
                finally:
                    if self._control is not None:
                        self._control.stop()
                    self.ready.set()
                    if started:
                        logger.info("{} stopped", self.name)
        if self.fatal is not None:
            raise self.fatal  # the CLI prints it as one line, with its exit code
        return code

    def fail(self, error: AgentbusError) -> None:
        """Stop because of an error no retry can mend (e.g. the server refuses our key).

        Thread-safe: the first error is kept, and ``run()`` raises it after a clean stop.
        """
        with self._fail_lock:
            first = self.fatal is None
            if first:
                self.fatal = error
        if first:
            logger.error("{} stops: {}", self.name, error)
        self.stop_event.set()

    def request_stop(self) -> None:
        """Ask for a graceful stop (thread-safe; also what the first signal does)."""
        self.stop_event.set()

    def install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals += 1
        if self._signals > 1:
            os._exit(EXIT_RUNTIME)
        self.stop_event.set()


def endpoints_from_config(config: Config) -> Endpoints:
    """The bus addresses this configuration describes."""
    b = config.bus
    return Endpoints.in_run_dir(
        config.agent.run_dir,
        events=b.events_endpoint,
        ingest=b.ingest_endpoint,
        commands=b.commands_endpoint,
        results=b.results_endpoint,
    )


def socket_options_from_config(config: Config) -> SocketOptions:
    """Socket options for every bus socket of this configuration (reads CURVE keys)."""
    secret = public = None
    if config.bus.curve_secret_key_file:
        try:
            lines = Path(config.bus.curve_secret_key_file).read_bytes().split()
            public, secret = lines[0], lines[1]
        except (OSError, IndexError):
            raise ConfigError(
                f"bus.curve_secret_key_file: cannot read a key pair (public, secret) from "
                f"{config.bus.curve_secret_key_file}"
            ) from None
    return SocketOptions(
        max_message_bytes=config.bus.max_message_bytes,
        hwm=config.bus.hwm,
        curve_secret_key=secret,
        curve_public_key=public,
    )
