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
import logging
import os
import signal
import threading
import time
from typing import Any

from loguru import logger

from bus import auth
from bus.control import READ_ONLY_COMMANDS, ControlServer
from bus.endpoints import Endpoints, is_loopback_tcp
from bus.errors import EXIT_OK, EXIT_RUNTIME, AgentbusError
from bus.sockets import SocketOptions
from bus.threads import StopEvent
from core.config import Config, ConfigError
from core.logs import RING_LINES, recent_lines
from core.metrics import CONTROL_REJECTED, SERVICE, MetricSet, Registry
from core.private_dirs import secure_agent_dirs


class Service:
    """Base class: subclasses set ``name`` and fill in the three lifecycle steps."""

    name = "service"
    #: this service's metrics (core/metrics.py), declared once in its package's metrics.py
    declared: MetricSet = SERVICE
    #: ``gc.set_threshold`` arguments for the process running this service (None: Python's)
    gc_threshold: tuple[int, int, int] | None = None
    #: control commands the group-accessible status socket answers; every other command
    #: is served on the owner-only admin socket alone (bus/control.py)
    read_only_commands: frozenset[str] = READ_ONLY_COMMANDS

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
            },
            "logs": self._logs,
        }

    def _logs(self, request: dict[str, Any]) -> dict[str, Any]:
        """The service's last log lines in this process (core/logs.py), for diagnostics."""
        n = request.get("lines", RING_LINES)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            return {"ok": False, "error": "'lines' must be a whole number, 0 or more"}
        return {"ok": True, "service": self.name, "lines": recent_lines(self.name, n)}

    def _control_figures(self) -> dict[str, Any]:
        """Bad requests on the control sockets, by reason; clients refused on this
        service's CURVE endpoints (a key not in the allow-list), by endpoint."""
        rejected = dict(self._control.rejected) if self._control is not None else {}
        self.metrics.set_many(CONTROL_REJECTED, rejected)
        figures: dict[str, Any] = {CONTROL_REJECTED.name: dict(sorted(rejected.items()))}
        refused = {e: n for e, n in auth.refused_counts(service=self.name).items() if n}
        if refused:
            figures[BUS_REFUSED] = dict(sorted(refused.items()))
        return figures

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
            secure_agent_dirs(self.config)  # tightened or refused before anything is written
            self.startup()
            started = True
            self._control = ControlServer(
                self.endpoints.control(self.name),
                self.control_handlers(),
                admin_endpoint=self.endpoints.admin(self.name),
                read_only=self.read_only_commands,
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
    """Socket options for every bus socket of this configuration.

    Reads the CURVE key pair and checks the clients dir, and refuses (ConfigError, exit 2)
    a key file others may read, a clients dir or key file others may write, and a tcp
    endpoint this configuration would serve without CURVE.
    """
    _route_bus_logs()
    b = config.bus
    secret = public = None
    if b.curve_secret_key_file:
        try:
            pair = auth.read_key_pair(b.curve_secret_key_file, "bus.curve_secret_key_file")
        except auth.KeyFileError as exc:
            raise ConfigError(str(exc)) from None
        public, secret = pair.public, pair.secret
    if b.curve_clients_dir:
        try:
            auth.load_clients_dir(b.curve_clients_dir)
        except auth.KeyFileError as exc:
            raise ConfigError(str(exc)) from None
    for key in ("events_endpoint", "ingest_endpoint", "commands_endpoint", "results_endpoint"):
        endpoint = getattr(b, key)
        if not endpoint.startswith("tcp://") or secret is not None:
            continue
        if not is_loopback_tcp(endpoint):
            raise ConfigError(
                f"bus.{key}: {endpoint} is reachable from other hosts: set "
                "bus.curve_secret_key_file (and admit clients in bus.curve_clients_dir)"
            )
        if not b.allow_plain_loopback:
            raise ConfigError(
                f"bus.{key}: {endpoint} without CURVE lets every local user reach the bus: "
                "set bus.curve_secret_key_file (and admit clients in bus.curve_clients_dir), "
                "or bus.allow_plain_loopback = true"
            )
    return SocketOptions(
        max_message_bytes=b.max_message_bytes,
        hwm=b.hwm,
        receive_budget_bytes=b.receive_budget_bytes,
        curve_secret_key=secret,
        curve_public_key=public,
        curve_clients_dir=b.curve_clients_dir,
        allow_plain_loopback=b.allow_plain_loopback,
    )


#: status key: clients refused on a CURVE endpoint of the service, by endpoint
BUS_REFUSED = "bus_refused"


class _ToLoguru(logging.Handler):
    """The bus package logs through ``logging`` (it is also an SDK): into the agent's log."""

    def emit(self, record: logging.LogRecord) -> None:
        logger.opt(exception=record.exc_info).log(record.levelname, record.getMessage())


def _route_bus_logs() -> None:
    bus_log = logging.getLogger(auth.log.name)
    if not any(isinstance(h, _ToLoguru) for h in bus_log.handlers):
        bus_log.addHandler(_ToLoguru())
        bus_log.setLevel(logging.INFO)
        bus_log.propagate = False
