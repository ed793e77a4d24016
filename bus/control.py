"""Control sockets: every service answers ``{"cmd": ...}`` requests on two REP sockets.

- the **status** socket (``control-<service>.sock``, 0660: the agent's group) answers the
  read-only commands (:data:`READ_ONLY_COMMANDS`): ``status`` returns the service's
  counters as a map, ``quarantine_list`` the forwarder's quarantine, ``logs`` the
  service's last log lines (``{"cmd": "logs", "lines": N}``, kept in memory);
- the **admin** socket (``admin-<service>.sock``, 0600) answers every command, those that
  change something too (``restart``, ``quarantine_retry``, ``quarantine_drop``), and only
  to a peer whose uid (``SO_PEERCRED``, taken by libzmq when the peer connects) is the
  agent's own or root's. A command is admin-only unless it is declared read-only.

Unknown commands, bad requests, an admin command on the status socket and a stranger on
the admin socket get ``{"ok": false, "error": "..."}`` and are counted by reason
(:attr:`ControlServer.rejected`, in every service's status as
``control_rejected: {reason: n}``); they never stop the service.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import msgpack
import zmq

from bus.endpoints import ipc_path
from bus.envelope import unpack_frame
from bus.errors import BusError, BusTimeout, InvalidEvent
from bus.sockets import (
    OWNER_ONLY_MODE,
    Binding,
    SocketOptions,
    WakeEvent,
    bind,
    connect,
    make_socket,
)
from bus.threads import start_thread

Handler = Callable[[dict[str, Any]], dict[str, Any]]

#: how long a control client waits for an answer (seconds)
DEFAULT_CONTROL_TIMEOUT = 2.0
#: commands that change nothing: the status socket answers them (all others: admin only)
READ_ONLY_COMMANDS = frozenset({"status", "quarantine_list", "logs"})


def peer_uid(frame: zmq.Frame) -> int | None:
    """The uid of the process that sent ``frame`` over ipc, None where unknown.

    libzmq reads the peer's ``SO_PEERCRED`` when the connection is made (not when the
    message is read, so a reused fd cannot lie) and appends ``:uid:gid:pid`` to the
    frame's ``Peer-Address`` property.
    """
    try:
        address = frame.get("Peer-Address")
    except zmq.ZMQError:
        return None
    parts = str(address).rsplit(":", 3)
    if len(parts) != 4 or not all(p.isdigit() for p in parts[1:]):
        return None
    return int(parts[1])


class ControlServer:
    """The status and admin REP sockets, served from one thread; handlers run in it.

    ``endpoint`` is the status socket (read-only commands, 0660); ``admin_endpoint`` the
    admin socket (every command, 0600, owner and root only); without one, the commands
    that are not in ``read_only`` are not served at all.

    Idle, the thread sleeps in one poll without a timeout: a request or :meth:`stop`
    wakes it (nothing else does).
    """

    def __init__(
        self,
        endpoint: str,
        handlers: dict[str, Handler],
        *,
        admin_endpoint: str | None = None,
        read_only: frozenset[str] = READ_ONLY_COMMANDS,
        context: zmq.Context | None = None,
        options: SocketOptions | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.admin_endpoint = admin_endpoint
        self.handlers = dict(handlers)
        self.read_only = read_only
        self._ctx = context or zmq.Context.instance()
        self._opts = options or SocketOptions()
        self._stop = WakeEvent()
        self._binding: Binding | None = None
        self._admin: Binding | None = None
        self._thread: threading.Thread | None = None
        #: uids the admin socket serves: the agent's own and root
        self.admin_uids = frozenset({0, os.geteuid()})
        #: bad requests by reason: multipart, too_large, not_msgpack, not_map,
        #: unknown_command, admin_only (an admin command on the status socket), not_owner
        #: (a peer of another uid on the admin socket)
        self.rejected: dict[str, int] = {}

    def start(self) -> None:
        """Bind now (so an endpoint conflict raises here) and serve in a daemon thread."""
        sock = make_socket(self._ctx, zmq.REP, self._opts)
        self._binding = bind(sock, self.endpoint, self._opts)
        if self.admin_endpoint is not None:
            try:
                admin = make_socket(self._ctx, zmq.REP, self._opts)
                self._admin = bind(admin, self.admin_endpoint, self._opts, mode=OWNER_ONLY_MODE)
            except BaseException:
                self._binding.close(linger_ms=0)
                raise
        self._thread = start_thread(self._serve, "control")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            if self._thread.is_alive():
                return  # a handler hangs: its poll may still use the stop fd
        self._stop.close()

    def _serve(self) -> None:
        assert self._binding is not None
        status = self._binding.sock
        admin = self._admin.sock if self._admin is not None else None
        poller = zmq.Poller()
        poller.register(status, zmq.POLLIN)
        if admin is not None:
            poller.register(admin, zmq.POLLIN)
        poller.register(self._stop, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll())
                for sock in (status, admin):
                    if sock is not None and sock in ready:
                        self._serve_one(sock, is_admin=sock is admin)
        finally:
            self._binding.close(linger_ms=0)
            if self._admin is not None:
                self._admin.close(linger_ms=0)

    def _serve_one(self, sock: zmq.Socket, *, is_admin: bool) -> None:
        try:
            # every frame: a REP socket may not answer before it read the whole request,
            # and a multipart request used to kill this thread (EFSM)
            frames = sock.recv_multipart(copy=False)
        except zmq.ZMQError:
            return
        if is_admin and not self._admitted(frames[0]):
            answer = self._reject(
                "not_owner", "the admin socket serves the agent's user and root only"
            )
        elif len(frames) == 1:
            answer = self._answer(frames[0].bytes, is_admin=is_admin)
        else:
            answer = self._reject("multipart", f"a request is one frame, got {len(frames)}")
        sock.send(msgpack.packb(answer, use_bin_type=True, default=str))

    def _admitted(self, frame: zmq.Frame) -> bool:
        """The peer's uid is ours or root's (unknown: the 0600 file mode is the check)."""
        uid = peer_uid(frame)
        return uid is None or uid in self.admin_uids

    def _reject(self, reason: str, error: str) -> dict[str, Any]:
        """Count a bad request by reason (the service's status shows it) and answer it."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        return {"ok": False, "error": error}

    def _answer(self, raw: bytes, *, is_admin: bool = False) -> dict[str, Any]:
        try:
            request = unpack_frame(raw, self._opts.max_message_bytes)
        except InvalidEvent as exc:
            words = {
                "too_large": f"request of {len(raw)} bytes is too large",
                "not_msgpack": "request is not msgpack",
            }
            return self._reject(exc.reason, words.get(exc.reason, f"bad request: {exc.message}"))
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return self._reject("not_map", "request must be a map with a string 'cmd'")
        handler = self.handlers.get(request["cmd"])
        if handler is None:
            return self._reject("unknown_command", f"unknown command {request['cmd']!r:.200}")
        if not is_admin and request["cmd"] not in self.read_only:
            where = (
                f"send it to the admin socket {self.admin_endpoint} (the agent's user or root)"
                if self.admin_endpoint
                else "this service has no admin socket"
            )
            return self._reject(
                "admin_only", f"{request['cmd']!r} changes the service's state: {where}"
            )
        try:
            return handler(request)
        except Exception as exc:  # a handler bug must not kill the control thread
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def request(
    endpoint: str,
    message: dict[str, Any],
    *,
    timeout: float = DEFAULT_CONTROL_TIMEOUT,
    context: zmq.Context | None = None,
) -> dict[str, Any]:
    """Send one control request and return the answer; BusTimeout if nobody answers,
    BusError if the socket file is there but not ours to use (an admin socket, 0600)."""
    path = ipc_path(endpoint)
    if path is not None and path.exists() and not os.access(path, os.W_OK):
        # libzmq would retry the refused connect until the timeout, and say nothing
        raise BusError(
            f"permission denied on {endpoint}: the agent's user or root only"
            if path.name.startswith("admin-")
            else f"permission denied on {endpoint}: run as the agent's user or group"
        )
    ctx = context or zmq.Context.instance()
    sock = make_socket(
        ctx, zmq.REQ, SocketOptions(linger_ms=0, send_timeout_ms=int(timeout * 1000))
    )
    try:
        connect(sock, endpoint)
        try:
            sock.send(msgpack.packb(message, use_bin_type=True))
        except zmq.Again:
            raise BusTimeout(f"nobody serves {endpoint}") from None
        if not sock.poll(int(timeout * 1000), zmq.POLLIN):
            raise BusTimeout(f"{endpoint} did not answer within {timeout:g}s")
        reply = msgpack.unpackb(sock.recv(), raw=False)
    finally:
        sock.close(linger=0)
    if not isinstance(reply, dict):
        raise BusError(f"{endpoint} sent an unexpected reply")
    return reply
