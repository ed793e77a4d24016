"""The collector SDK: put events on the local bus from any Python script.

Two ways in, both needing only ``pyzmq`` and ``msgpack``:

- :class:`Publisher` — the fast path (PUSH). Fire and forget: an event is handed to the
  forwarder's socket buffer; what sits there is lost if the forwarder dies.
- :class:`Ingest` — the acknowledged path (DEALER). Each call returns once the forwarder
  has committed the events to disk, or says which events it rejected and why;
  :meth:`Ingest.send_until_committed` also retries while the forwarder is absent or full.

Example::

    from bus import Publisher
    with Publisher() as pub:
        pub.send("myapp", "audit", {"message": "user logged in"})
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zmq

from bus.auth import ClientKeys
from bus.endpoints import Endpoints, default_run_dir
from bus.envelope import Event, encode_events
from bus.errors import BusError, BusTimeout, InvalidEvent
from bus.sockets import DEFAULT_MAX_MESSAGE_BYTES, SocketOptions, connect, make_socket, poll_ms

#: how long Publisher.send may wait for room in the forwarder's buffer (seconds)
DEFAULT_SEND_TIMEOUT = 5.0
#: how long Ingest.send waits for the forwarder's answer (seconds)
DEFAULT_INGEST_TIMEOUT = 10.0
#: Ingest.send_until_committed: the wait between two tries unless the caller gives its own
DEFAULT_RETRY_DELAY = 0.5
#: Ingest.send_until_committed: how often a wait looks at a plain ``threading.Event`` stop
#: flag (milliseconds); a :class:`bus.sockets.WakeEvent` wakes the wait itself
STOP_CHECK_MS = 100


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
        curve: ClientKeys | None = None,
    ) -> None:
        if endpoint is None:
            eps = Endpoints.in_run_dir(run_dir or default_run_dir())
            endpoint = eps.events if kind == zmq.PUSH else eps.ingest
        self.endpoint = endpoint
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        self._kind = kind
        self._ctx = context or zmq.Context.instance()
        # tcp endpoints: the client's own CURVE keys (else connect() reads them from
        # AGENTBUS_CURVE_SERVER_KEY / AGENTBUS_CURVE_CLIENT_KEY; docs/bus-protocol.md)
        self._opts = SocketOptions(
            send_timeout_ms=int(timeout * 1000),
            max_message_bytes=max_message_bytes,
            curve_server_key=curve.server if curve else None,
            curve_public_key=curve.own.public if curve else None,
            curve_secret_key=curve.own.secret if curve else None,
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
    :param curve: for a tcp endpoint, the server's public key and this client's key pair
        (:class:`bus.auth.ClientKeys`); default: from the environment (docs/bus-protocol.md).
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
        curve: ClientKeys | None = None,
    ) -> None:
        super().__init__(
            zmq.PUSH, endpoint, run_dir, send_timeout, context, max_message_bytes, curve
        )
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
    :param curve: as for :class:`Publisher`.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        run_dir: str | None = None,
        timeout: float = DEFAULT_INGEST_TIMEOUT,
        context: zmq.Context | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        curve: ClientKeys | None = None,
    ) -> None:
        super().__init__(zmq.DEALER, endpoint, run_dir, timeout, context, max_message_bytes, curve)

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

    def send_until_committed(
        self,
        events: list[dict[str, Any]] | dict[str, Any],
        stop: threading.Event,
        *,
        retry_delay: float | Callable[[int], float] = DEFAULT_RETRY_DELAY,
        on_retry: Callable[[str, str], None] | None = None,
        frame: bytes | None = None,
    ) -> IngestResult | None:
        """Send until the forwarder has taken the events; None if ``stop`` is set first.

        Tries again while the forwarder is not there, does not answer within ``timeout``,
        answers something that is not a reply, or answers ``"full"``. Returns the first other
        answer: ``ok``, or a refusal (``rejected``: the batch's valid events *are* committed,
        the others would be refused again; ``too_large`` and the like: sending the same
        frame again cannot help). Every wait — for room to send, for the answer, between
        tries — ends as soon as ``stop`` is set, so a service asked to stop is never held up
        by an absent or hung forwarder: at once for a :class:`bus.sockets.WakeEvent` (even
        when set by a signal handler), within :data:`STOP_CHECK_MS` for a plain
        ``threading.Event``.

        :param stop: set it to give up (from another thread, or a signal handler).
        :param retry_delay: seconds between tries, or a function of the number of failures
            in a row (1, 2, ...) returning them — e.g. an exponential back-off.
        :param on_retry: called before each wait with a reason (``"full"``, ``"timeout"``
            or ``"error"``) and a message, to count or log the failure.
        :param frame: ``events`` already encoded with :func:`bus.envelope.encode_events`
            (not encoded or size-checked again).

        A timeout is the one case where a retry may repeat events: the forwarder may have
        committed a frame whose answer never arrived. "full" never repeats.
        """
        if frame is None:
            frame = self._frame(events)
        failures = 0
        while not stop.is_set():
            try:
                result = self._request(frame, stop)
            except BusTimeout as exc:
                reason, detail = "timeout", str(exc)
            except BusError as exc:
                reason, detail = "error", str(exc)
            else:
                if result is None:
                    return None
                if result.error != "full":
                    return result
                reason, detail = "full", f"forwarder at {self.endpoint} is full"
            failures += 1
            if on_retry is not None:
                on_retry(reason, detail)
            stop.wait(retry_delay(failures) if callable(retry_delay) else retry_delay)
        return None

    def _request(self, frame: bytes, stop: threading.Event) -> IngestResult | None:
        """One request whose every wait looks at ``stop``; None when it is set meanwhile."""
        deadline = time.monotonic() + self.timeout
        if not self._wait(zmq.POLLOUT, deadline, stop):
            if stop.is_set():
                return None
            raise BusTimeout(f"forwarder at {self.endpoint} is not reachable")
        try:
            self._sock.send(frame, zmq.NOBLOCK, copy=len(frame) < 65536)
        except zmq.Again:
            raise BusTimeout(f"forwarder at {self.endpoint} did not take the request") from None
        if not self._wait(zmq.POLLIN, deadline, stop):
            self._reset()
            if stop.is_set():
                return None
            raise BusTimeout(
                f"forwarder at {self.endpoint} did not answer within {self.timeout:g}s"
            )
        try:
            reply = msgpack.unpackb(self._sock.recv(), raw=False)
        except Exception:
            raise BusError("forwarder sent a reply that is not msgpack") from None
        return parse_reply(reply)

    def _wait(self, flags: int, deadline: float, stop: threading.Event) -> bool:
        """Wait until the socket is ready for ``flags``; False at ``deadline`` or on stop.

        A ``stop`` with a ``fileno()`` (:class:`bus.sockets.WakeEvent`) is polled with the
        socket, so the wait is one poll until the deadline; a plain Event is looked at
        every :data:`STOP_CHECK_MS`.
        """
        poller = zmq.Poller()
        poller.register(self._sock, flags)
        wakes = hasattr(stop, "fileno")
        if wakes:
            poller.register(stop, zmq.POLLIN)
        while True:
            left = deadline - time.monotonic()
            wait = left if wakes else min(left, STOP_CHECK_MS / 1000)
            ready = dict(poller.poll(poll_ms(max(0.0, wait))))
            if ready.get(self._sock, 0) & flags:
                return True
            if stop.is_set() or time.monotonic() >= deadline:
                return False

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
