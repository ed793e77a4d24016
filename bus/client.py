"""The collector SDK: put events on the local bus from any Python script.

Two ways in, both needing only ``pyzmq`` and ``msgpack``:

- :class:`Publisher` — the fast path (PUSH). Fire and forget: an event is handed to the
  forwarder's socket buffer; what sits there is lost if the forwarder dies.
- :class:`Ingest` — the acknowledged path (DEALER). Each call returns once the forwarder
  has committed the events to disk, or says which events it rejected and why.

Example::

    from bus import Publisher
    with Publisher() as pub:
        pub.send("myapp", "audit", {"message": "user logged in"})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack
import zmq

from bus.endpoints import Endpoints, default_run_dir
from bus.envelope import Event, encode_events
from bus.errors import BusError, BusTimeout, InvalidEvent
from bus.sockets import DEFAULT_MAX_MESSAGE_BYTES, SocketOptions, connect, make_socket

#: how long Publisher.send may wait for room in the forwarder's buffer (seconds)
DEFAULT_SEND_TIMEOUT = 5.0
#: how long Ingest.send waits for the forwarder's answer (seconds)
DEFAULT_INGEST_TIMEOUT = 10.0


def make_event(
    module: str,
    collector: str | None,
    data: dict[str, Any] | None,
    *,
    stateful: bool = False,
    id: str | None = None,
    operation: str | None = None,
    ts: float | None = None,
) -> dict[str, Any]:
    """Build and validate one event map; raises :class:`InvalidEvent` if the server would not accept it."""
    raw: dict[str, Any] = {"module": module, "type": "stateful" if stateful else "stateless"}
    if collector is not None:
        raw["collector"] = collector
    if data is not None:
        raw["data"] = data
    if id is not None:
        raw["id"] = id
    if operation is not None:
        raw["operation"] = operation
    if ts is not None:
        raw["ts"] = ts
    return Event.from_wire(raw).to_wire()


class _Client:
    def __init__(
        self,
        kind: int,
        endpoint: str | None,
        run_dir: str | None,
        timeout: float,
        context: zmq.Context | None,
        max_message_bytes: int,
    ) -> None:
        if endpoint is None:
            eps = Endpoints.in_run_dir(run_dir or default_run_dir())
            endpoint = eps.events if kind == zmq.PUSH else eps.ingest
        self.endpoint = endpoint
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        self._kind = kind
        self._ctx = context or zmq.Context.instance()
        self._opts = SocketOptions(
            send_timeout_ms=int(timeout * 1000), max_message_bytes=max_message_bytes
        )
        self._sock = self._open()

    def _open(self) -> zmq.Socket:
        sock = make_socket(self._ctx, self._kind, self._opts)
        connect(sock, self.endpoint, self._opts)
        return sock

    def _frame(self, events: list[dict[str, Any]] | dict[str, Any]) -> bytes:
        frame = encode_events(events)
        if len(frame) > self.max_message_bytes:
            raise InvalidEvent(
                "too_large",
                f"message of {len(frame)} bytes is over the limit of {self.max_message_bytes}; "
                "send fewer events per batch",
            )
        return frame

    def close(self) -> None:
        """Close the socket; pending messages get at most the linger time to leave."""
        if not self._sock.closed:
            self._sock.close()

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Publisher(_Client):
    """Fast path: PUSH events to the forwarder.

    :param endpoint: bus address; default ``ipc://<run_dir>/events.sock``.
    :param run_dir: the agent's run dir; default ``$AGENTBUS_AGENT_RUN_DIR`` or ``/run/agentbus``.
    :param send_timeout: seconds a send may wait when the forwarder is absent or full;
        then :class:`BusTimeout` is raised (a send never blocks forever).
    :param validate: check every event locally before sending (on by default).
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        run_dir: str | None = None,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        validate: bool = True,
        context: zmq.Context | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        super().__init__(zmq.PUSH, endpoint, run_dir, send_timeout, context, max_message_bytes)
        self.validate = validate

    def send(
        self, module: str, collector: str | None, data: dict[str, Any] | None, **kwargs: Any
    ) -> None:
        """Send one event built from its fields (see :func:`make_event` for the keywords)."""
        self._push(make_event(module, collector, data, **kwargs))

    def send_event(self, event: dict[str, Any]) -> None:
        """Send one event map as it is on the wire."""
        if self.validate:
            Event.from_wire(event)
        self._push(event)

    def send_batch(self, events: list[dict[str, Any]]) -> None:
        """Send several event maps in one frame (cheaper than one frame each)."""
        if not events:
            return
        if self.validate:
            for ev in events:
                Event.from_wire(ev)
        self._push(events)

    def _push(self, payload: list[dict[str, Any]] | dict[str, Any]) -> None:
        frame = self._frame(payload)
        try:
            self._sock.send(frame, 0, copy=len(frame) < 65536)
        except zmq.Again:
            raise BusTimeout(
                f"forwarder at {self.endpoint} did not take the event within {self.timeout:g}s "
                "(not running, or its queue is full)"
            ) from None
        except zmq.ZMQError as exc:
            raise BusError(f"cannot send to {self.endpoint}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Rejection:
    """One event the forwarder refused: its index in the batch, a reason key and a message."""

    index: int
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The forwarder's answer to one :meth:`Ingest.send`."""

    ok: bool
    accepted: int
    error: str | None = None
    rejected: list[Rejection] = field(default_factory=list)


class Ingest(_Client):
    """Acknowledged path: send events and wait until the forwarder has them on disk.

    Events that pass validation are committed even when others in the same batch are
    rejected; :attr:`IngestResult.rejected` names the others by index. ``error == "full"``
    means nothing was accepted because the queue is at its byte limit: try again later.

    :param endpoint: bus address; default ``ipc://<run_dir>/ingest.sock``.
    :param timeout: seconds to wait for the answer; then :class:`BusTimeout` is raised and
        the socket is reset (the events may or may not have been committed).
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        run_dir: str | None = None,
        timeout: float = DEFAULT_INGEST_TIMEOUT,
        context: zmq.Context | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        super().__init__(zmq.DEALER, endpoint, run_dir, timeout, context, max_message_bytes)

    def send(self, events: list[dict[str, Any]] | dict[str, Any]) -> IngestResult:
        """Send one event map or a list of them; returns the forwarder's verdict."""
        frame = self._frame(events)
        try:
            self._sock.send(frame)
        except zmq.Again:
            self._reset()
            raise BusTimeout(f"forwarder at {self.endpoint} is not reachable") from None
        if not self._sock.poll(int(self.timeout * 1000), zmq.POLLIN):
            self._reset()
            raise BusTimeout(
                f"forwarder at {self.endpoint} did not answer within {self.timeout:g}s"
            )
        reply = msgpack.unpackb(self._sock.recv(), raw=False)
        return parse_reply(reply)

    def _reset(self) -> None:
        # A late answer would pair with the next request: start over on a fresh socket.
        self._sock.close(linger=0)
        self._sock = self._open()


def parse_reply(reply: Any) -> IngestResult:
    """The forwarder's answer map as an :class:`IngestResult` (docs/bus-protocol.md, ingest)."""
    if not isinstance(reply, dict) or "ok" not in reply:
        raise BusError(f"forwarder sent an unexpected reply: {reply!r:.100}")
    rejected = [
        Rejection(int(r.get("index", -1)), str(r.get("reason", "")), str(r.get("message", "")))
        for r in reply.get("rejected") or []
        if isinstance(r, dict)
    ]
    return IngestResult(
        ok=bool(reply["ok"]),
        accepted=int(reply.get("accepted", 0)),
        error=reply.get("error"),
        rejected=rejected,
    )
