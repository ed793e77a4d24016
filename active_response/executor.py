"""The active-response executor: topic ``active-response``, one process of its own.

It connects to the agent's bus like any third-party executor (bus.Executor) and answers
every action ``active-response.<name>``: the program ``<name>`` found in the allowed
directory (active_response.programs) runs with the message of active_response.message on
its standard input (active_response.run). Results, as for every command:

- 0 and the program's last output line;
- 1 and the reason: ``not allowed: ...`` (a bad name, an untrusted directory or file),
  ``not found: <name>``, ``<name> failed with code N: <last line>``, ``<name> printed
  more than N bytes``, bad arguments;
- 3 when the program did not finish within its limit (``run_timeout``, or less when the
  command's own timeout ends sooner).

A timed add (``args.timeout``) is kept in active_response.store and undone by a
``delete`` when it ends, also after a restart. Every run is logged and counted; the
counters and the responses in force are written to the status file (active_response.status).
"""

from __future__ import annotations

import collections
import datetime
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loguru import logger

from active_response import programs
from active_response.message import TIMEOUT_ORIGIN, BadArgs, Request, build, request_from_args
from active_response.run import Outcome, environment, run_program
from active_response.settings import ActiveResponseSettings
from active_response.status import REFRESH, write_status
from active_response.store import Full, Store
from bus.executor import Command, Executor, Handler
from core.config import Config, ConfigError
from core.service import endpoints_from_config

TOPIC = "active-response"
#: the result is sent this long before the command's own timeout ends, so that the
#: program's timeout is reported by us (3, with its name) and not by the commander
REPORT_MARGIN = 1.0
#: shortest run a program is given
MIN_RUN = 0.5
#: refusals logged per minute (each one is counted)
REFUSALS_LOGGED_PER_MINUTE = 10


class _EveryAction(dict[str, Handler]):
    """The SDK looks a handler up by action; every action of the topic is ours (an
    unknown name is answered "not found" by the handler, with the reason)."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self._handler = handler

    def get(self, key: str, default: Any = None) -> Handler:  # type: ignore[override]
        return self._handler


class ActiveResponse:
    def __init__(
        self, config: Config, settings: ActiveResponseSettings, **executor_args: Any
    ) -> None:
        self.config = config
        self.settings = settings
        endpoints = endpoints_from_config(config)
        check_commands_dir(endpoints.commands)
        self.store = Store(settings.state_dir)
        try:  # a planted responses.db would have us run deletes of someone else's choosing
            programs.check_chain(Path(settings.state_dir), programs.trusted_uids(), "state_dir")
        except programs.Refused as exc:
            self.store.close()
            raise ConfigError(f"active_response.{str(exc).removeprefix('not allowed: ')}") from None
        self.executor = Executor(
            [TOPIC],
            name="active-response",
            commands_endpoint=endpoints.commands,
            results_endpoint=endpoints.results,
            workers=settings.workers,
            max_message_bytes=config.bus.max_message_bytes,
            **executor_args,
        )
        self.executor.handlers = _EveryAction(self.handle)
        self.env = program_environment(config, settings)
        self.counters: collections.Counter[str] = collections.Counter()
        self.refused: collections.Counter[str] = collections.Counter()
        self.by_program: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._stop = threading.Event()
        self._changed = threading.Event()
        self._refusals_logged: collections.deque[float] = collections.deque()
        self._expiry: threading.Thread | None = None

    # -- running -----------------------------------------------------------------------
    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (in the main thread) or :meth:`stop`."""
        self._expiry = threading.Thread(target=self._expire_loop, name="ar-expiry", daemon=True)
        self._expiry.start()
        logger.info(
            "active-response executor started (pid {}): programs from {}{}",
            os.getpid(),
            self.settings.programs_dir,
            f", enabled by name: {', '.join(self.settings.enabled)}"
            if self.settings.enabled
            else "",
        )
        try:
            self.executor.run()
        finally:
            self._stop.set()
            self._changed.set()
            self._expiry.join(timeout=self.settings.run_timeout + 5)
            self.write_status()
            self.store.close()
            logger.info("active-response executor stopped")
        return 0

    def stop(self) -> None:
        self.executor.stop()

    # -- one command -------------------------------------------------------------------
    def handle(self, command: Command) -> tuple[int, str]:
        try:
            name = programs.check_name(command.verb)
            request = request_from_args(name, command.args)
        except programs.Refused as exc:
            return self._refuse(command.verb, exc.reason, str(exc))
        except BadArgs as exc:
            return self._refuse(command.verb, "bad_args", f"Command is not valid: {exc}")
        if request.timeout > self.settings.max_response_timeout:
            return self._refuse(
                name, "bad_args",
                f"Command is not valid: args.timeout is over {self.settings.max_response_timeout:g}s",
            )  # fmt: skip
        limit = self.settings.run_timeout
        if command.timeout > 0:
            limit = min(limit, command.timeout - REPORT_MARGIN)
        return self.respond(request, command.id, max(MIN_RUN, limit))

    def respond(self, request: Request, origin: str, limit: float) -> tuple[int, str]:
        """Run ``request``'s program (found and checked now) and keep its timed response."""
        try:
            program = programs.find(
                request.program, self.settings.programs_dir, self.settings.enabled
            )
        except programs.Refused as exc:
            return self._refuse(request.program, exc.reason, str(exc))
        timed = request.command == "add" and request.timeout > 0 and not request.dry_run
        if timed:
            try:  # before it runs: a kill -9 during the run must not lose the delete
                self.store.schedule(
                    request, origin, time.time() + request.timeout, self.settings.max_in_force
                )
            except Full as exc:
                return self._refuse(request.program, "full", f"not allowed: {exc}")
            self._changed.set()
        outcome = self._run(program, request, origin, limit)
        code, message = result_of(request.program, outcome, self.settings.max_output)
        if not request.dry_run:
            if timed and outcome.exit_code not in (None, 0):
                self.store.remove(request.key)  # it failed by itself: nothing to undo
            elif request.command == "delete" and code == 0:
                self.store.remove(request.key)  # undone by hand: no delete at its timeout
        self.write_status()
        return code, message

    def _run(
        self, program: programs.Program, request: Request, origin: str, limit: float
    ) -> Outcome:
        outcome = run_program(
            program.path,
            build(request, origin),
            argv=("--dry-run",) if request.dry_run else (),
            timeout=limit,
            max_output=self.settings.max_output,
            env=self.env,
        )
        with self._lock:
            self.counters["runs"] += 1
            self.by_program[request.program] += 1
            key = outcome.reason or ("succeeded" if outcome.exit_code == 0 else "failed")
            self.counters[key] += 1
        logger.info(
            "{} {}{} ({}) for {}: {} in {:.2f}s: {}",
            request.program, request.command, " --dry-run" if request.dry_run else "",
            program.path, origin,
            outcome.reason or f"exit {outcome.exit_code}", outcome.seconds, outcome.last_line[:200],
        )  # fmt: skip
        return outcome

    def _refuse(self, name: str, reason: str, message: str) -> tuple[int, str]:
        with self._lock:
            self.counters["refused"] += 1
            self.refused[reason] += 1
            now = time.monotonic()
            while self._refusals_logged and now - self._refusals_logged[0] > 60:
                self._refusals_logged.popleft()
            log = len(self._refusals_logged) < REFUSALS_LOGGED_PER_MINUTE
            if log:
                self._refusals_logged.append(now)
        if log:
            logger.warning("refused {!r}: {}", str(name)[:80], message)
        self.write_status()
        return 1, message

    # -- timed responses ---------------------------------------------------------------
    def _expire_loop(self) -> None:
        while not self._stop.is_set():
            self._changed.clear()
            try:
                for item in self.store.due(time.time()):
                    if self._stop.is_set():
                        return
                    self._expire(item.key, item.request)
                due = self.store.next_due()
            except Exception:  # a disk error: log it, and try again later
                logger.exception("timed responses: cannot read or update the store")
                due = None
            self.write_status()
            wait = REFRESH if due is None else min(REFRESH, max(0.0, due - time.time()))
            self._changed.wait(wait)

    def _expire(self, key: str, request: Request) -> None:
        try:
            program = programs.find(
                request.program, self.settings.programs_dir, self.settings.enabled
            )
        except programs.Refused as exc:
            outcome = Outcome(None, str(exc), "refused")
        else:
            outcome = self._run_delete(program, request)
        if outcome.exit_code == 0:
            self.store.remove(key)
            with self._lock:
                self.counters["timed_deletes"] += 1
            return
        attempts = self.store.retry_later(key, time.time() + self.settings.delete_retry)
        with self._lock:
            self.counters["timed_delete_failures"] += 1
        if attempts >= self.settings.delete_attempts:
            self.store.remove(key)
            logger.error(
                "{}: the delete at the end of its timeout failed {} times ({}): given up; "
                "undo it by hand", request.program, attempts, outcome.last_line or outcome.reason,
            )  # fmt: skip
        else:
            logger.warning(
                "{}: the delete at the end of its timeout failed ({}): trying again in {:g}s",
                request.program, outcome.last_line or outcome.reason, self.settings.delete_retry,
            )  # fmt: skip

    def _run_delete(self, program: programs.Program, request: Request) -> Outcome:
        delete = Request(request.program, "delete", request.extra_args, request.alert)
        return self._run(program, delete, TIMEOUT_ORIGIN, self.settings.run_timeout)

    # -- status ------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        with self._lock:
            counters = dict(self.counters)
            refused = dict(self.refused)
            by_program = dict(self.by_program)
        in_force = [item.view() for item in self.store.in_force()]
        return {
            "updated": time.time(),
            "pid": os.getpid(),
            "programs_dir": self.settings.programs_dir,
            "enabled": list(self.settings.enabled),
            "counters": counters,
            "refused": refused,
            "programs": by_program,
            "executor": dict(self.executor.stats),
            "in_force": in_force,
        }

    def write_status(self) -> None:
        try:
            with self._status_lock:  # handlers and the expiry thread write it
                write_status(self.settings.state_dir, self.report())
        except Exception as exc:  # the status is for people; the work goes on
            logger.warning("cannot write the status file: {}", exc)


def check_commands_dir(endpoint: str) -> None:
    """Refuse (exit 2) a commands socket in a directory others than its owner may write:
    one of them could put a socket of their own there while the agent is down, and send
    commands to this privileged executor."""
    if not endpoint.startswith("ipc://"):
        return  # tcp: CURVE with the agent's key (docs/bus-protocol.md)
    directory = os.path.dirname(endpoint[len("ipc://") :]) or "."
    try:
        mode = os.stat(directory).st_mode & 0o777
    except OSError:
        return  # not there yet: the agent makes it (0750 at most) and the SDK waits
    if mode & 0o022:
        raise ConfigError(
            f"agent.run_dir {directory} is mode {mode:04o}: others than its owner could "
            "replace the commands socket; make it 0750 (the unit's RuntimeDirectoryMode)"
        )


def result_of(name: str, outcome: Outcome, max_output: int) -> tuple[int, str]:
    """The command's result for a run that ended as ``outcome``."""
    if outcome.reason == "timeout":
        return 3, f"{name} timed out after {outcome.seconds:.1f}s"
    if outcome.reason == "too_large":
        return 1, f"{name} printed more than {max_output} bytes: stopped"
    if outcome.reason:
        return 1, f"{name}: {outcome.last_line}"
    if outcome.exit_code != 0:
        return 1, f"{name} failed with code {outcome.exit_code}: {outcome.last_line}"
    return 0, outcome.last_line or f"{name} done"


def program_environment(config: Config, settings: ActiveResponseSettings) -> dict[str, str]:
    """A program's whole environment (active_response.run): the facts our programs need."""
    return environment(
        {
            "AGENTBUS_AR_PROTECT": ",".join(protected_addresses(config, settings)),
            "AGENTBUS_AR_AGENT_USER": settings.agent_user,
        }
    )


def protected_addresses(config: Config, settings: ActiveResponseSettings) -> list[str]:
    """The addresses no program may block: the configured ones and the server's."""
    out = list(settings.protected_addresses)
    host = urlsplit(config.agent.server_url).hostname
    if host:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            out.extend(sorted({str(info[4][0]) for info in infos}))
        except OSError:
            logger.warning(
                "cannot resolve the server's name {}: only its listed addresses are protected", host
            )
            out.append(host)
    return list(dict.fromkeys(out))


def until(ts: float) -> str:
    """A timestamp as local ISO time, to the second."""
    return datetime.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")
