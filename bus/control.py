"""Control sockets: every service answers ``{"cmd": ...}`` requests on a REP socket.

``{"cmd": "status"}`` returns the service's counters as a map. Services may register more
commands (the forwarder's quarantine commands, for instance). Unknown commands and bad
requests get ``{"ok": false, "error": "..."}`` and are counted by reason
(:attr:`ControlServer.rejected`, in every service's status as ``control_rejected: {reason: n}``);
they never stop the service.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import msgpack
import zmq

from bus.errors import BusError, BusTimeout
from bus.sockets import Binding, SocketOptions, WakeEvent, bind, connect, make_socket
from bus.threads import start_thread

Handler = Callable[[dict[str, Any]], dict[str, Any]]

#: how long a control client waits for an answer (seconds)
DEFAULT_CONTROL_TIMEOUT = 2.0


class ControlServer:
    """A REP socket served from its own thread; handlers run in that thread.

    Idle, the thread sleeps in one poll without a timeout: a request or :meth:`stop`
    wakes it (nothing else does).
    """

    def __init__(
        self,
        endpoint: str,
        handlers: dict[str, Handler],
        *,
        context: zmq.Context | None = None,
        options: SocketOptions | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.handlers = dict(handlers)
        self._ctx = context or zmq.Context.instance()
        self._opts = options or SocketOptions()
        self._stop = WakeEvent()
        self._binding: Binding | None = None
        self._thread: threading.Thread | None = None
        #: bad requests by reason: multipart, too_large, not_msgpack, not_map, unknown_command
        self.rejected: dict[str, int] = {}

    def start(self) -> None:
        """Bind now (so an endpoint conflict raises here) and serve in a daemon thread."""
        sock = make_socket(self._ctx, zmq.REP, self._opts)
        self._binding = bind(sock, self.endpoint, self._opts)
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
        sock = self._binding.sock
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._stop, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if sock not in dict(poller.poll()):
                    continue  # the stop fd: the loop ends
                try:
                    # every frame: a REP socket may not answer before it read the whole
                    # request, and a multipart request used to kill this thread (EFSM)
                    frames = sock.recv_multipart()
                except zmq.ZMQError:
                    continue
                if len(frames) == 1:
                    answer = self._answer(frames[0])
                else:
                    answer = self._reject("multipart", f"a request is one frame, got {len(frames)}")
                sock.send(msgpack.packb(answer, use_bin_type=True, default=str))
        finally:
            self._binding.close(linger_ms=0)

    def _reject(self, reason: str, error: str) -> dict[str, Any]:
        """Count a bad request by reason (the service's status shows it) and answer it."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        return {"ok": False, "error": error}

    def _answer(self, raw: bytes) -> dict[str, Any]:
        if len(raw) > self._opts.max_message_bytes:
            return self._reject("too_large", f"request of {len(raw)} bytes is too large")
        try:
            request = msgpack.unpackb(raw, raw=False)
        except Exception:
            return self._reject("not_msgpack", "request is not msgpack")
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return self._reject("not_map", "request must be a map with a string 'cmd'")
        handler = self.handlers.get(request["cmd"])
        if handler is None:
            return self._reject("unknown_command", f"unknown command {request['cmd']!r:.200}")
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
    """Send one control request and return the answer; BusTimeout if nobody answers."""
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
