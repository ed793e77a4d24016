"""The built-in executor of the ``agent`` topic: set-group, fetch-config, restart.

Run it as ``agentbus agent-executor --config F`` (``agentbus run`` starts it when
``commander.agent_executor`` is true). :class:`AgentExecutorService` is a service like the
others (control socket ``control-agent-executor.sock``, ``status``); inside, it is an
ordinary :class:`bus.Executor`:

- ``set-group`` — ``args.groups``: a list of group names (required). Every group's file
  ``<group>.yml`` is fetched from the server (``GET /api/v1/files``) first; only when all of
  them arrived are they written to ``<data_dir>/groups/`` (files of groups the agent left
  are removed) and the groups stored in the credentials, which changes the agent metadata
  line of every later events body (the forwarder re-reads the credentials file when it
  changes). A missing file or an unreachable server → result 1 with the reason, and
  nothing changes.
- ``fetch-config`` — fetch the files of the current groups again.
- ``restart`` — answers 2 "in progress"; the commander restarts the agent once that report
  is with the forwarder, and reports 0 when it is back (docs/protocol.md, "Commands").
- anything else, or bad arguments → 1 "Command is not valid".

A result goes to the server, so it never carries a local path or an ``OSError``'s text:
the detail is logged here, the result says what failed in a few generic words ("cannot
write group file web.yml"). A file larger than ``[agent] max_download_bytes`` is refused
(comms.errors.TooLarge) before anything is written; each file is written atomically (a
temporary file in the same directory, fsynced, renamed; mode 0600).
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from loguru import logger

from bus.errors import AgentbusError
from bus.executor import Command, Executor
from bus.results import NOT_VALID, ResultCode
from bus.threads import start_thread
from commander.routing import AGENT_TOPIC
from comms.credentials import load_credentials, update_groups
from comms.errors import ServerError
from comms.private_files import remove_private, write_private
from core.config import Config
from core.service import Service, endpoints_from_config

#: group names the server accepts (letters, digits, ``_ - .``; not ``.`` or ``..``); used
#: with fullmatch: ``$`` alone would let a name end in a newline
GROUP_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,255}")
#: most groups one agent may belong to
MAX_GROUPS = 128
#: where group files go, under the data dir
GROUPS_DIR = "groups"


class FileSource(Protocol):
    """What the executor needs from the comms client (``comms.api.ServerClient``)."""

    def get_file(self, name: str) -> bytes | None: ...


class AgentActions:
    """The three actions, on the data dir of ``config``; ``client`` is made on first use."""

    def __init__(self, config: Config, client: FileSource | None = None) -> None:
        self.config = config
        self.data_dir = Path(config.agent.data_dir)
        self._client = client
        self._lock = threading.Lock()  # one action at a time: they share the files

    @property
    def client(self) -> FileSource:
        if self._client is None:
            # Imported on first use: requests and its kin are most of this process when it
            # runs alone ([agent] isolation = "process"), and most commands need no file.
            from comms.api import ServerClient
            from comms.tokens import TokenManager

            creds = load_credentials(self.data_dir)
            self._client = ServerClient(self.config, TokenManager(self.config, creds))
        return self._client

    def handlers(self) -> dict[str, Any]:
        return {
            "set-group": self.set_group,
            "fetch-config": self.fetch_config,
            "restart": self.restart,
        }

    # -- actions -----------------------------------------------------------------------
    def set_group(self, command: Command) -> tuple[ResultCode, str]:
        groups = _groups_arg(command.args)
        if groups is None:
            logger.warning("agent-executor: set-group {} has bad args", command.id)
            return ResultCode.FAILURE, NOT_VALID
        with self._lock:
            files, error = self._fetch(groups)
            if error:
                return ResultCode.FAILURE, error
            error = self._store(files, prune=True)
            if error:
                return ResultCode.FAILURE, error
            try:
                update_groups(self.data_dir, groups)
            except (OSError, AgentbusError) as exc:
                logger.error("agent-executor: cannot store the groups: {}", exc)
                return ResultCode.FAILURE, "Cannot store the groups on the agent"
        shown = ", ".join(groups) if groups else "(none)"
        logger.info("agent-executor: groups set to {}", shown)
        return ResultCode.SUCCESS, f"Groups set to {shown}; {len(files)} group file(s) fetched"

    def fetch_config(self, command: Command) -> tuple[ResultCode, str]:
        with self._lock:
            try:
                groups = list(load_credentials(self.data_dir).groups)
            except AgentbusError as exc:  # its text names the credentials file
                logger.error("agent-executor: cannot read the groups: {}", exc)
                return ResultCode.FAILURE, "Cannot read the agent's groups"
            files, error = self._fetch(groups)
            if error:
                return ResultCode.FAILURE, error
            error = self._store(files, prune=True)
            if error:
                return ResultCode.FAILURE, error
        return ResultCode.SUCCESS, f"{len(files)} group file(s) fetched"

    def restart(self, command: Command) -> tuple[ResultCode, str]:
        # The commander does the restart, after this report reached the forwarder.
        return ResultCode.IN_PROGRESS, "Restarting the agent"

    # -- files -------------------------------------------------------------------------
    def _fetch(self, groups: list[str]) -> tuple[dict[str, bytes], str]:
        """Every group's file, or an error message (then nothing is written)."""
        files: dict[str, bytes] = {}
        for group in groups:
            name = f"{group}.yml"
            try:
                body = self.client.get_file(name)
            except ServerError as exc:  # the server's own words, our URL: nothing local
                return {}, f"Cannot fetch {name}: {exc}"
            except (OSError, AgentbusError) as exc:
                # Local trouble (credentials unreadable, a CA file missing): its text may
                # name local paths, so the server gets generic words and the log the rest.
                logger.error("agent-executor: cannot fetch {}: {}", name, exc)
                return {}, f"Cannot fetch {name}: the agent could not make the request"
            if body is None:
                return {}, f"Cannot fetch {name}: the server has no such file"
            files[name] = body
        return files, ""

    def _store(self, files: dict[str, bytes], *, prune: bool) -> str:
        """Write the files (each atomically); an error message for the server, else ""."""
        folder = self.data_dir / GROUPS_DIR
        doing, name = "write", ""
        try:
            for name, body in files.items():
                write_private(folder / name, body)
            if prune and folder.is_dir():
                doing, name = "remove", ""
                for old in folder.glob("*.yml"):
                    if old.name not in files:
                        name = old.name
                        remove_private(old)
        except OSError as exc:
            # The path and the OS's words stay here; the server learns which file.
            logger.error("agent-executor: cannot {} {}: {}", doing, folder / name, exc)
            return f"Cannot {doing} group file {name}" if name else "Cannot update the group files"
        return ""


def _groups_arg(args: dict[str, Any]) -> list[str] | None:
    groups = args.get("groups")
    if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
        return None
    out: list[str] = []
    for g in groups:
        if not isinstance(g, str) or not GROUP_NAME.fullmatch(g) or g in (".", ".."):
            return None
        if g not in out:
            out.append(g)
    return out


def make_executor(config: Config, client: FileSource | None = None) -> Executor:
    """The agent executor for ``config``, connected to its commander's endpoints."""
    eps = endpoints_from_config(config)
    return Executor(
        [AGENT_TOPIC],
        name="agent",
        handlers=AgentActions(config, client).handlers(),
        commands_endpoint=eps.commands,
        results_endpoint=eps.results,
        workers=1,
        max_message_bytes=config.bus.max_message_bytes,
    )


class AgentExecutorService(Service):
    """The executor of :func:`make_executor` run as a service (its own thread serves)."""

    name = "agent-executor"

    def __init__(self, config: Config, *, client: FileSource | None = None) -> None:
        super().__init__(config)
        self.client = client
        self.executor: Executor | None = None
        self._thread: threading.Thread | None = None
        #: set by a stop request, and by the executor's thread when it ends
        self._wake = threading.Event()
        self._executor_ended = False

    def startup(self) -> None:
        self.executor = make_executor(self.config, self.client)
        self.resources.callback(self._stop_executor)
        self.stop_event.also_set(self._wake)
        self._thread = start_thread(self._serve, f"executor-{self.executor.name}")
        logger.info("agent-executor: serving topic {}", AGENT_TOPIC)

    def _serve(self) -> None:
        assert self.executor is not None
        try:
            self.executor.run(install_signals=False)
        except Exception:
            logger.exception("agent-executor: the executor failed")
        finally:
            # Its end wakes the main loop, which watches it without a timer.
            self._executor_ended = True
            self._wake.set()

    def main_loop(self) -> None:
        self._wake.wait()
        if self._executor_ended:  # it ended before anyone asked it to (a stop comes later)
            raise RuntimeError("the executor's thread stopped")

    def _stop_executor(self) -> None:
        assert self.executor is not None
        self.executor.stop()  # running handlers are waited for
        if self._thread is not None:
            self._thread.join(max(0.0, self.stop_deadline - time.monotonic()))

    def status(self) -> dict[str, Any]:
        out = super().status()
        if self.executor is not None:
            out.update(self.executor.stats)
        return out
