"""The long-poll loop: GET /api/v1/commands, persist what comes, hand it to the fan-out.

One request is always outstanding while the commander runs. The client timeout
(``commander.request_timeout``, default 11 minutes) is above the server's hold, so a quiet
server ends the wait with 408 and the loop polls again at once. Errors (server unreachable,
unexpected status, bad body) back off with equal jitter (:func:`core.backoff.compute_backoff`),
doubling from ``backoff_initial`` to ``backoff_max``; the token manager inside the client
renews the token on 401/403.

Each command is written to commands.db *before* the fan-out hears of it: once the server
has handed it over, a crash must not lose it. A document id seen before is skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from loguru import logger

from bus.errors import AgentbusError
from bus.results import NOT_VALID, ResultCode
from bus.threads import start_thread
from commander import metrics as cm
from commander.command import BadCommand, ServerCommand
from commander.store import CommandStore
from comms.errors import ServerError, ServerRejected
from core.backoff import compute_backoff
from core.logs import RateLimitedLog
from core.metrics import Registry


class CommandSource(Protocol):
    """What the poller needs from the comms client (``comms.api.ServerClient``)."""

    def get_commands(self, timeout: float) -> list[dict[str, Any]]: ...


class Poller:
    """Runs the long-poll in its own thread; ``deliver`` receives newly stored commands."""

    def __init__(
        self,
        client: CommandSource,
        store: CommandStore,
        metrics: Registry,
        stop_event: threading.Event,
        deliver: Callable[[list[ServerCommand]], None],
        *,
        request_timeout: float,
        command_timeout: float,
        backoff_initial: float,
        backoff_max: float,
        on_answered: Callable[[], None] = lambda: None,
        on_fatal: Callable[[AgentbusError], None] | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.metrics = metrics
        self.stop_event = stop_event
        self.deliver = deliver
        self.request_timeout = request_timeout
        self.command_timeout = command_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.on_answered = on_answered
        self._failures = 0
        #: a final refusal by the server; the service exits with it
        self.fatal: Exception | None = None
        #: told of that refusal (the commander's Service.fail, which stops the service)
        self.on_fatal = on_fatal
        self._bad = RateLimitedLog(10)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = start_thread(self._run, "poller")

    @property
    def alive(self) -> bool:
        """Whether its thread still runs (it may be inside a long-poll)."""
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float) -> None:
        # The thread may be inside a long-poll; it is a daemon and dies with the process.
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            delay = self.poll_once()
            if delay:
                self.stop_event.wait(delay)

    def poll_once(self) -> float:
        """One request; returns how long to wait before the next (0 = at once)."""
        self.metrics.inc(cm.POLLS)
        try:
            raw = self.client.get_commands(self.request_timeout)
        except ServerRejected as exc:
            # Final (invalid key, unknown agent): retrying cannot help. The service stops
            # and exits 3 with this message (comms/errors.py).
            self.metrics.error(str(exc))
            self.fatal = exc
            if self.on_fatal is not None:
                self.on_fatal(exc)
            self.stop_event.set()
            return 0.0
        except ServerError as exc:
            return self._failed(str(exc))
        except Exception as exc:  # a bug or an unexpected library error: keep polling
            logger.exception("commander: long-poll failed unexpectedly")
            return self._failed(f"{type(exc).__name__}: {exc}")
        self._failures = 0
        if not raw:
            self.metrics.inc(cm.POLLS_408)
            return 0.0
        if self.stop_event.is_set():
            logger.warning("commander: {} command(s) arrived while stopping", len(raw))
        self.accept(raw)
        return 0.0

    def accept(self, raw: list[dict[str, Any]]) -> list[ServerCommand]:
        """Validate, persist and deliver one batch of server commands."""
        new: list[ServerCommand] = []
        answered = False
        for item in raw:
            self.metrics.inc(cm.COMMANDS_RECEIVED)
            try:
                command = ServerCommand.from_server(item, default_timeout=self.command_timeout)
            except BadCommand as exc:
                self.metrics.inc(cm.BAD_COMMANDS, reason=exc.reason)
                self._bad.warning(exc.reason, "commander: rejected a command: {}", exc)
                if exc.document_id is not None:
                    if self.store.add_answered(exc.document_id, ResultCode.FAILURE, NOT_VALID):
                        self.metrics.inc(cm.EXECUTED, code=int(ResultCode.FAILURE))
                        answered = True
                    else:
                        self.metrics.inc(cm.DUPLICATES_SKIPPED)
                continue
            if not self.store.add(command):
                self.metrics.inc(cm.DUPLICATES_SKIPPED)
                logger.info(
                    "commander: command {} was delivered again; it runs once",
                    command.document_id,
                )
                continue
            logger.info("commander: received {} ({})", command.name, command.document_id)
            new.append(command)
        if new:
            self.deliver(new)
        if answered:
            self.on_answered()
        return new

    def _failed(self, message: str) -> float:
        if self.stop_event.is_set():
            return 0.0  # the call was ended because we stop (Commander._end_long_poll)
        self._failures += 1
        self.metrics.inc(cm.POLL_ERRORS)
        self.metrics.error(message)
        # Equal jitter: the pollers of many agents spread out, yet each waits at least half
        # the ceiling, so nothing (not even a tiny backoff_initial) makes the poll a busy loop
        # against a server that fails at once; nothing else bounds this loop's rate.
        delay = compute_backoff(
            self._failures, initial=self.backoff_initial, maximum=self.backoff_max, jitter="equal"
        )
        logger.warning("commander: long-poll failed ({}); next try in {:.1f}s", message, delay)
        return delay
