"""The built-in executor of the ``agent`` topic: set-group, fetch-config, restart.

Run it as ``agentbus agent-executor --config F`` (``agentbus run`` starts it when
``commander.agent_executor`` is true). :class:`AgentExecutorService` is a service like the
others (control socket ``control-agent-executor.sock``, ``status``); inside, it is an
ordinary :class:`bus.Executor`:

- ``set-group`` — ``args.groups``: a list of group names (required). Every group's file
  ``<group>.yml`` is fetched from the server (``GET /api/v1/files``), then every one is
  checked as configuration (core/groupfile.py, docs/configuration.md) and the whole
  configuration built with them; only when all of that passed is the stored set replaced,
  at once (commander/group_files.py), and the groups stored in the credentials (the agent
  metadata line of every later events body). Then the supervisor is asked to reload
  (``reload`` on its owner-only ``admin-agent.sock``): it restarts the services whose
  sections changed, and the result says which. A missing file, an unreachable server, a
  bad value or a refused key → result 1 naming the group, the key and what is wrong, and
  nothing changes.
- ``fetch-config`` — the same for the current groups.

  After either, when SCA is enabled, the sca service is sent ``scan`` (its owner-only
  ``admin-sca.sock``): a policy file may have changed on disk even when the configuration
  did not. A service the reload just restarted assesses at start anyway, so nobody
  answering is no failure (logged at debug); the result says "sca assessment started"
  (or "queued": one more follows the running one).
- ``restart`` — answers 2 "in progress"; the commander restarts the agent once that report
  is with the forwarder, and reports 0 when it is back (docs/protocol.md, "Commands").
- anything else, or bad arguments → 1 "Command is not valid".

Without a supervisor (services started alone), nothing answers the reload: the set is
stored and the result says so; each service reads the stored group files when it starts.

A result goes to the server, so it never carries a local path or an ``OSError``'s text:
the detail is logged here, the result says what failed in a few generic words ("cannot
write group file web.yml"). A file larger than ``[agent] max_download_bytes`` is refused
(comms.errors.TooLarge) before anything is written.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Protocol

from loguru import logger

from bus.control import request as control_request
from bus.endpoints import ipc_path
from bus.errors import AgentbusError, BusError
from bus.executor import Command, Executor
from bus.results import NOT_VALID, ResultCode
from bus.threads import start_thread
from commander.group_files import store_set
from commander.routing import AGENT_TOPIC
from comms.credentials import load_credentials, update_groups
from comms.errors import ServerError
from core.config import Config, ConfigError, check_changes, reload_config, with_groups
from core.groupfile import GroupFile, GroupFileError, parse_group_file
from core.groupset import GROUP_NAME, GROUPS_LINK, file_name, valid_group_name
from core.service import Service, endpoints_from_config

__all__ = ["GROUP_NAME", "AgentActions", "AgentExecutorService", "make_executor"]

#: most groups one agent may belong to
MAX_GROUPS = 128
#: where group files go, under the data dir (a link to the set in force)
GROUPS_DIR = GROUPS_LINK
#: how long the supervisor may take to reload, beyond stopping and starting services
RELOAD_MARGIN = 20.0
#: how long the supervisor gets to say it is there
PROBE_TIMEOUT = 2.0
#: the service assessed again after a set-group or fetch-config
SCA_SERVICE = "sca"


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
            code, done = self._apply(groups)
            if code is not ResultCode.SUCCESS:
                return code, done
            try:
                update_groups(self.data_dir, groups)
            except (OSError, AgentbusError) as exc:
                logger.error("agent-executor: cannot store the groups: {}", exc)
                return ResultCode.FAILURE, "Cannot store the groups on the agent"
            reloaded = self._reload() + self._assess()
        shown = ", ".join(groups) if groups else "(none)"
        logger.info("agent-executor: groups set to {}", shown)
        return ResultCode.SUCCESS, f"Groups set to {shown}; {done}; {reloaded}"

    def fetch_config(self, command: Command) -> tuple[ResultCode, str]:
        with self._lock:
            try:
                groups = list(load_credentials(self.data_dir).groups)
            except AgentbusError as exc:  # its text names the credentials file
                logger.error("agent-executor: cannot read the groups: {}", exc)
                return ResultCode.FAILURE, "Cannot read the agent's groups"
            code, done = self._apply(groups)
            if code is not ResultCode.SUCCESS:
                return code, done
            reloaded = self._reload() + self._assess()
        return ResultCode.SUCCESS, f"{done[0].upper()}{done[1:]}; {reloaded}"

    def _apply(self, groups: list[str]) -> tuple[ResultCode, str]:
        """Fetch, check and store the files of ``groups``: (SUCCESS, what was done) or
        (FAILURE, why) — then nothing changed."""
        files, error = self._fetch(groups)
        if error:
            return ResultCode.FAILURE, error
        parsed, error = self._check(groups, files)
        if error:
            return ResultCode.FAILURE, error
        try:
            store_set(self.data_dir, [(g, files[file_name(g)]) for g in groups])
        except OSError as exc:
            # The path and the OS's words stay here; the server learns what failed.
            logger.error("agent-executor: cannot store the group files: {}", exc)
            return ResultCode.FAILURE, "Cannot write the group files"
        ignored = [f"{p.name}: {w}" for p in parsed for w in p.warnings]
        for line in ignored:
            logger.warning("agent-executor: group {}", line)
        done = f"{len(files)} group file(s) fetched"
        if ignored:
            done += f" ({len(ignored)} setting(s) ignored, see the agent's log)"
        return ResultCode.SUCCESS, done

    def _check(self, groups: list[str], files: dict[str, bytes]) -> tuple[list[GroupFile], str]:
        """Every file as configuration, then all of them on the configuration in force."""
        parsed: list[GroupFile] = []
        for group in groups:
            try:
                one = parse_group_file(group, files[file_name(group)])
                check_changes(one)
            except GroupFileError as exc:  # the file's key and the server's own value
                return [], f"Group {group}: {file_name(group)} refused: {exc}"
            parsed.append(one)
        try:
            with_groups(self.config, parsed, None)
        except ConfigError as exc:
            return [], f"Group files refused: {exc}"
        return parsed, ""

    def _reload(self) -> str:
        """Ask the supervisor to apply the stored set; what it did, in a few words."""
        endpoint = endpoints_from_config(self.config).admin("agent")
        timeout = 2 * self.config.agent.stop_timeout + RELOAD_MARGIN
        socket_file = ipc_path(endpoint)
        try:
            if socket_file is not None and not socket_file.exists():
                raise BusError("no supervisor socket")
            # A quick question first: nothing listening must not cost the long wait.
            control_request(endpoint, {"cmd": "status"}, timeout=PROBE_TIMEOUT)
            reply = control_request(endpoint, {"cmd": "reload"}, timeout=timeout)
        except BusError as exc:
            logger.info("agent-executor: no supervisor reloaded the configuration: {}", exc)
            return "no supervisor answered: each service applies them when it starts"
        if not reply.get("ok"):
            logger.error("agent-executor: the reload failed: {}", reply.get("error"))
            return "the reload failed (see the agent's log)"
        return describe_reload(reply)

    def _assess(self) -> str:
        """Ask the sca service for an assessment now: ``"; sca assessment started"``, or
        ``""`` when SCA is off or nobody answered (a service started by the reload
        assesses at start anyway)."""
        try:
            enabled = reload_config(self.config).collectors.sca.enabled
        except ConfigError:  # the stored set was checked: the configuration in force decides
            enabled = self.config.collectors.sca.enabled
        if not enabled:
            return ""
        endpoint = endpoints_from_config(self.config).admin(SCA_SERVICE)
        socket_file = ipc_path(endpoint)
        try:
            if socket_file is not None and not socket_file.exists():
                raise BusError("no sca admin socket")
            reply = control_request(endpoint, {"cmd": "scan"}, timeout=PROBE_TIMEOUT)
        except BusError as exc:
            logger.debug("agent-executor: no sca service took the scan request: {}", exc)
            return ""
        if not reply.get("ok"):
            logger.warning("agent-executor: the sca service refused a scan: {}", reply.get("error"))
            return ""
        return f"; sca assessment {reply.get('scan', 'started')}"

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


def _groups_arg(args: dict[str, Any]) -> list[str] | None:
    groups = args.get("groups")
    if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
        return None
    out: list[str] = []
    for g in groups:
        if not valid_group_name(g):
            return None
        if g not in out:
            out.append(g)
    return out


def describe_reload(reply: dict[str, Any]) -> str:
    """``reloaded logcollector; started fim`` from the supervisor's answer to ``reload``."""
    parts = [
        f"{verb} {', '.join(reply[key])}"
        for key, verb in (("restarted", "reloaded"), ("started", "started"), ("stopped", "stopped"))
        if reply.get(key)
    ]
    return "; ".join(parts) if parts else "no service needed a reload"


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
