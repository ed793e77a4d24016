"""The one lifecycle every long-running agentbus service follows.

``Service(config).run()`` = ``startup()`` → ``main_loop()`` → ``shutdown(deadline)``.
Loops wait on ``self.stop_event.wait(interval)``, never on a bare sleep, so a signal acts at
once. Signal handlers only set flags: the first SIGTERM/SIGINT asks for a graceful stop,
a second one exits at once (whatever is committed to disk stays there).
"""

from __future__ import annotations

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
from core.config import Config
from core.counters import Counters


class Service:
    """Base class: subclasses set ``name`` and fill in the three lifecycle steps."""

    name = "service"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stop_event = threading.Event()
        self.counters = Counters()
        self.endpoints = endpoints_from_config(config)
        self.socket_options = socket_options_from_config(config)
        self._signals = 0
        self._control: ControlServer | None = None
        #: set by fail(): run() raises it after a clean shutdown
        self.fatal: AgentbusError | None = None

    # -- lifecycle -------------------------------------------------------------------
    def startup(self) -> None:
        """Open sockets, files and connections; raise an AgentbusError to refuse to start."""

    def main_loop(self) -> None:
        """Work until ``stop_event`` is set."""
        self.stop_event.wait()

    def shutdown(self, deadline: float) -> None:
        """Release everything before ``deadline`` (a ``time.monotonic()`` value)."""

    def status(self) -> dict[str, Any]:
        """Every counter of this service (served on the control socket)."""
        return self.counters.snapshot()

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
        out: dict[str, Any] = {"control_rejected": sum(rejected.values())}
        out.update({f"control_rejected_{reason}": n for reason, n in rejected.items()})
        return out

    # -- running ---------------------------------------------------------------------
    def run(self) -> int:
        """Run the whole lifecycle in the foreground; returns the process exit code."""
        self.install_signal_handlers()
        self.startup()
        self._control = ControlServer(
            self.endpoints.control(self.name), self.control_handlers(), options=self.socket_options
        )
        try:
            self._control.start()
            logger.info("{} started (pid {})", self.name, os.getpid())
            self.main_loop()
            code = EXIT_OK
        except Exception:
            logger.exception("{} stopped on an unexpected error", self.name)
            code = EXIT_RUNTIME
        finally:
            deadline = time.monotonic() + self.config.agent.stop_timeout
            try:
                self.shutdown(deadline)
            finally:
                self._control.stop()
                logger.info("{} stopped", self.name)
        if self.fatal is not None:
            raise self.fatal  # the CLI prints it as one line, with its exit code
        return code

    def fail(self, error: AgentbusError) -> None:
        """Stop because of an error no retry can mend (e.g. the server refuses our key)."""
        if self.fatal is None:
            logger.error("{} stops: {}", self.name, error)
            self.fatal = error
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
        from core.config import ConfigError

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
