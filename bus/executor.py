"""The executor SDK: receive commands from the commander, run them, report the result.

An executor is any program that subscribes to one or more *topics* on the commander's
PUB socket and answers on its results PULL socket. This module does the bus part; you
write one handler per action. It needs only ``pyzmq`` and ``msgpack``.

Example::

    from bus import Executor

    executor = Executor(["myapp"], name="myapp-executor")

    @executor.handler("scan")            # the server action "myapp.scan"
    def scan(command):
        paths = command.args.get("paths", [])
        return 0, f"scanned {len(paths)} path(s)"

    executor.run()                       # until SIGTERM/SIGINT or executor.stop()

What happens on the wire (docs/bus-protocol.md):

- at start and every :data:`HELLO_INTERVAL` seconds the executor pushes
  ``{"hello": [topics], "executor": name}`` so the commander knows the topic is served;
- each command arrives as two frames ``[topic, msgpack {"id", "name", "args", "timeout",
  "issued_at"}]``; the executor pushes ``{"ack": id}`` at once (the commander stops
  publishing it again), runs the handler in a worker thread, then pushes
  ``{"id", "code", "message"}``;
- a command seen before (same id) is acknowledged again but not run again;
- an action without a handler is answered with code 1 "Command is not valid", a handler
  that raises with code 1 and the exception's type and text — for an ``OSError`` only its
  words, never the file names in it (the full exception is logged here).

Result codes (docs/protocol.md, "Commands"): 0 success, 1 failure, 2 in progress, 3 timeout,
4 unknown — :class:`bus.results.ResultCode`; a handler may return the enum or a plain int.
"""

from __future__ import annotations

import collections
import itertools
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgpack
import zmq

from bus.endpoints import Endpoints, default_run_dir
from bus.envelope import unpack_frame
from bus.errors import BusError
from bus.results import MAX_MESSAGE_CHARS, NOT_VALID, ResultCode
from bus.sockets import (
    DEFAULT_MAX_MESSAGE_BYTES,
    SocketOptions,
    WakeEvent,
    connect,
    make_socket,
    poll_ms,
)
from bus.threads import current_service, mark_service, start_thread

log = logging.getLogger("agentbus.bus")


def failure_text(exc: Exception) -> str:
    """What the server is told of a handler's exception: its type and words, but not an
    ``OSError``'s file names — the layout of the host is no business of the server's."""
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror}" if exc.strerror else type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


#: seconds between two hello messages (the commander's executor_ttl must be longer)
HELLO_INTERVAL = 5.0
#: how many command ids an executor remembers to recognise a command delivered twice
DEDUPE_MEMORY = 10_000

_instance_ids = itertools.count()


@dataclass(frozen=True, slots=True)
class Command:
    """One command as an executor receives it.

    :ivar id: the server's document id; results are matched on it.
    :ivar name: the full action name, e.g. ``"myapp.scan"`` or ``"set-group"``.
    :ivar args: the action's arguments (a map, possibly empty).
    :ivar timeout: seconds the commander still waits for the result.
    :ivar issued_at: epoch seconds at which the commander received the command.
    :ivar topic: the topic it arrived on.
    """

    id: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    timeout: float = 0.0
    issued_at: float = 0.0
    topic: str = ""

    @property
    def verb(self) -> str:
        """The name without its ``<topic>.`` prefix (``"scan"`` for ``"myapp.scan"``)."""
        prefix = self.topic + "."
        return self.name[len(prefix) :] if self.name.startswith(prefix) else self.name


class InvalidCommand(Exception):
    """Raise from a handler when the arguments are wrong: the result is 1 with your message."""


#: what a handler returns: ``(code, message)``, or just a message for success
HandlerResult = tuple[int, str] | str | None
Handler = Callable[[Command], HandlerResult]


class Executor:
    """Serve commands of ``topics`` with one handler per action.

    :param topics: topics to subscribe to (a module name each, e.g. ``["myapp"]``).
    :param name: this executor's name, shown in the commander's status.
    :param handlers: optional ``{action: handler}`` map; :meth:`handler` adds more. An action
        is looked up by its full name first (``"myapp.scan"``), then by its verb (``"scan"``).
    :param run_dir: the agent's run dir; default ``$AGENTBUS_AGENT_RUN_DIR`` or ``/run/agentbus``.
    :param commands_endpoint: the commander's PUB address; default ``ipc://<run_dir>/commands.sock``.
    :param results_endpoint: the commander's PULL address; default ``ipc://<run_dir>/results.sock``.
    :param workers: how many handlers may run at once (threads).
    :param hello_interval: seconds between hello messages.

    A handler takes a :class:`Command` and returns ``(code, message)`` (or a message string,
    meaning code 0). It runs in a worker thread, so it may block; it should finish within
    ``command.timeout`` seconds, after which the commander reports a timeout (3) itself.
    """

    def __init__(
        self,
        topics: Iterable[str],
        *,
        name: str | None = None,
        handlers: dict[str, Handler] | None = None,
        run_dir: str | None = None,
        commands_endpoint: str | None = None,
        results_endpoint: str | None = None,
        workers: int = 4,
        hello_interval: float = HELLO_INTERVAL,
        context: zmq.Context | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.topics = sorted(set(topics))
        if not self.topics or not all(isinstance(t, str) and t for t in self.topics):
            raise ValueError("an executor needs at least one non-empty topic")
        self.name = name or "-".join(self.topics)
        self.handlers: dict[str, Handler] = dict(handlers or {})
        eps = Endpoints.in_run_dir(run_dir or default_run_dir())
        self.commands_endpoint = commands_endpoint or eps.commands
        self.results_endpoint = results_endpoint or eps.results
        self.hello_interval = hello_interval
        self.max_message_bytes = max_message_bytes
        #: figures about this executor's work (received, duplicates, results by code, ...)
        self.stats: collections.Counter[str] = collections.Counter()
        self._stats_lock = threading.Lock()
        self._ctx = context or zmq.Context.instance()
        self._pool = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="handler",
            initializer=mark_service,  # its log lines carry the creator's service
            initargs=(current_service(),),
        )
        # a WakeEvent: SIGTERM's handler only sets it, and that wakes the loop's poll
        self._stop = WakeEvent()
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self._wake_addr = f"inproc://executor-wake-{id(self)}-{next(_instance_ids)}"
        self._wake_lock = threading.Lock()
        self._wake_push: zmq.Socket | None = None
        self._running = threading.Event()

    # -- handlers ----------------------------------------------------------------------
    def handler(self, action: str) -> Callable[[Handler], Handler]:
        """Decorator: register ``func`` as the handler of ``action``."""

        def register(func: Handler) -> Handler:
            self.handlers[action] = func
            return func

        return register

    # -- running -----------------------------------------------------------------------
    def run(self, *, install_signals: bool = True) -> None:
        """Serve until :meth:`stop` is called (or SIGTERM/SIGINT in the main thread)."""
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self._stop.set())
        opts = SocketOptions(max_message_bytes=self.max_message_bytes, send_timeout_ms=0)
        sub = make_socket(self._ctx, zmq.SUB, opts)
        push = make_socket(self._ctx, zmq.PUSH, opts)
        wake_pull = self._ctx.socket(zmq.PULL)
        wake_pull.bind(self._wake_addr)
        with self._wake_lock:
            self._wake_push = self._ctx.socket(zmq.PUSH)
            self._wake_push.connect(self._wake_addr)
        try:
            for topic in self.topics:
                sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
            connect(sub, self.commands_endpoint, opts)
            connect(push, self.results_endpoint, opts)
            self._running.set()
            self._loop(sub, push, wake_pull)
        finally:
            self._running.clear()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._flush(push, until=time.monotonic() + 1.0)
            with self._wake_lock:
                if self._wake_push is not None:
                    self._wake_push.close(linger=0)
                    self._wake_push = None
            for sock in (sub, push, wake_pull):
                sock.close(linger=0)

    def start(self) -> threading.Thread:
        """Run in a background thread (for tests and embedding); returns the thread."""
        thread = start_thread(self.run, f"executor-{self.name}", install_signals=False)
        self._running.wait(5)
        return thread

    def stop(self) -> None:
        """Ask :meth:`run` to return (thread-safe); running handlers are waited for."""
        self._stop.set()

    # -- the loop ----------------------------------------------------------------------
    def _loop(self, sub: zmq.Socket, push: zmq.Socket, wake_pull: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        poller.register(wake_pull, zmq.POLLIN)
        poller.register(self._stop, zmq.POLLIN)
        next_hello = 0.0
        hello_due = True
        while not self._stop.is_set():
            now = time.monotonic()
            if hello_due or now >= next_hello:
                hello_due = not self._send(push, {"hello": self.topics, "executor": self.name})
                if not hello_due:
                    next_hello = now + self.hello_interval
            # Unsent hello or results (no commander connected, or it is restarting): wait
            # until the socket can send, so the commander hears from us the moment it is
            # there; otherwise sleep until the next hello, a command, a result or stop.
            poller.register(push, zmq.POLLOUT if hello_due or self._pending else 0)
            wait = None if hello_due else max(0.0, next_hello - now)
            ready = dict(poller.poll(poll_ms(wait)))
            if wake_pull in ready:
                while wake_pull.poll(0):
                    wake_pull.recv()
            if sub in ready:
                while sub.poll(0):
                    self._receive(sub.recv_multipart())
            self._flush(push)

    def _receive(self, frames: list[bytes]) -> None:
        command = self._parse(frames)
        if command is None:
            return
        self._count("received")
        # Through the pending queue, like results: right after start the SUB side may be
        # connected before the PUSH side is, and an ack must not be dropped then.
        self._pending.append({"ack": command.id})
        if command.id in self._seen:
            self._count("duplicates")
            return
        self._seen[command.id] = None
        while len(self._seen) > DEDUPE_MEMORY:
            self._seen.popitem(last=False)
        self._pool.submit(self._execute, command)

    def _parse(self, frames: list[bytes]) -> Command | None:
        # The commander is trusted, but a stray publisher on a tcp bus is not: never crash.
        if len(frames) != 2:
            self._count("bad_input")
            return None
        topic = frames[0].decode(errors="replace")
        if topic not in self.topics:  # SUBSCRIBE matches prefixes: "agent" gets "agentx" too
            return None
        try:
            body = unpack_frame(frames[1], self.max_message_bytes)  # within the limits
            cid, name = body["id"], body["name"]
            if not isinstance(cid, str) or not cid or not isinstance(name, str):
                raise ValueError
            args = body.get("args") or {}
            if not isinstance(args, dict):
                args = {"_invalid": args}
            return Command(
                id=cid,
                name=name,
                args=args,
                timeout=float(body.get("timeout") or 0.0),
                issued_at=float(body.get("issued_at") or 0.0),
                topic=topic,
            )
        except Exception:
            self._count("bad_input")
            return None

    def _execute(self, command: Command) -> None:
        handler = self.handlers.get(command.name) or self.handlers.get(command.verb)
        if handler is None or "_invalid" in command.args:
            code, message = ResultCode.FAILURE, NOT_VALID
        else:
            try:
                code, message = _normalise(handler(command))
            except InvalidCommand as exc:
                code, message = ResultCode.FAILURE, str(exc) or NOT_VALID
            except Exception as exc:  # a handler bug is this command's failure, not ours
                log.exception("executor %s: %s failed", self.name, command.name)
                code, message = ResultCode.FAILURE, failure_text(exc)
        with self._stats_lock:  # handlers run in several threads
            self.stats[f"code_{int(code)}"] += 1
        self._pending.append({"id": command.id, "code": int(code), "message": message})
        self._wake()

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def _wake(self) -> None:
        with self._wake_lock:
            if self._wake_push is not None:
                try:
                    self._wake_push.send(b"", zmq.NOBLOCK)
                except zmq.Again:
                    pass  # a wake-up is already queued

    def _flush(self, push: zmq.Socket, until: float | None = None) -> None:
        """Push acks and results; keep those the commander cannot take yet (it may be down)."""
        while self._pending:
            if self._send(push, self._pending[0]):
                self._pending.popleft()
                continue
            left = None if until is None else until - time.monotonic()
            if left is None or left <= 0:
                return
            push.poll(poll_ms(left), zmq.POLLOUT)  # only while closing, bounded by ``until``

    def _send(self, push: zmq.Socket, message: dict[str, Any]) -> bool:
        try:
            push.send(msgpack.packb(message, use_bin_type=True), zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False  # no commander connected right now
        except zmq.ZMQError as exc:
            raise BusError(f"cannot send to {self.results_endpoint}: {exc}") from None


def _normalise(value: HandlerResult) -> tuple[ResultCode, str]:
    if value is None:
        return ResultCode.SUCCESS, ""
    if isinstance(value, str):
        return ResultCode.SUCCESS, value[:MAX_MESSAGE_CHARS]
    code, message = value
    valid = ResultCode.of(code)
    if valid is None:
        return ResultCode.FAILURE, f"handler returned an invalid result code {code!r}"
    return valid, str(message)[:MAX_MESSAGE_CHARS]
