"""Health for machines: ``/health`` (200 or 503) and ``/metrics`` (Prometheus text format).

Off by default (``[health] enabled``); listens on loopback unless ``[health] listen`` says
otherwise. Figures come from the same control sockets ``agentbus status`` reads, so the two
never disagree.

Any local user can connect, so what a connection may cost is bounded (``[health]``):

- one thread waits on every connection at once (a selector) until its request is
  complete: an idle connection costs a descriptor, not a thread;
- at most ``max_connections`` are held; when full, the oldest one still waiting for its
  request is closed to make room (a flood of idle connections cannot lock out a scrape),
  and when every one is being answered the new one is closed at once;
- a connection that sends no complete request within ``connection_timeout`` is closed;
- complete requests are answered by ``workers`` threads, each answer sent with that
  timeout too.

Every connection closed unanswered is counted by reason (``health_dropped``). Idle, the
selector thread sleeps until the next connection deadline, or without a timeout.
"""

from __future__ import annotations

import errno
import json
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from loguru import logger
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from agent import metrics as am
from agent.metrics import declared
from agent.status import collect_status
from core.config import Config, ConfigError
from core.logs import RateLimitedLog
from core.metrics import Kind, MetricSet, Registry, exposition

#: longest request head read (request line and headers); a longer one is closed
MAX_REQUEST_BYTES = 8192
#: connections accepted per wake-up of the selector (others wait in the backlog)
ACCEPT_BURST = 64
#: after accept() failed for lack of descriptors, the listener rests this long (seconds):
#: a listening socket stays readable, and accepting again at once would spin
ACCEPT_PAUSE = 1.0


class _StatusCollector:
    """A prometheus collector: which services answer, and each one's declared metrics."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        report = self.snapshot()
        up = GaugeMetricFamily(
            "agentbus_service_up", "1 if the service answers", labels=["service"]
        )
        for service, state in report["services"].items():
            up.add_metric([service], 1.0 if state.get("up") else 0.0)
        yield up
        children = report["services"]["agent"].get("counters", {}).get("children", {})
        child_up = GaugeMetricFamily(
            "agentbus_child_up", "1 if the child process runs", labels=["child"]
        )
        restarts = GaugeMetricFamily(
            "agentbus_child_restarts", "restarts after a crash", labels=["child"]
        )
        for name, child in children.items():
            child_up.add_metric([name], 1.0 if child.get("up") else 0.0)
            restarts.add_metric([name], float(child.get("restarts") or 0))
        yield child_up
        yield restarts
        for service, state in report["services"].items():
            if state.get("up"):
                yield from service_families(declared(service), state.get("counters", {}))


def service_families(
    metric_set: MetricSet, figures: dict[str, Any]
) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """A service's metrics, as its declarations say (agent/metrics.py, core/metrics.py):
    ``agentbus_<service>_<name>``, counters with ``_total``, labels as labels."""
    for family in exposition(metric_set, figures):
        cls = CounterMetricFamily if family.kind is Kind.COUNTER else GaugeMetricFamily
        out = cls(family.name, family.help, labels=list(family.labels))
        for labels, value in family.samples:
            out.add_metric(list(labels), value)
        yield out


@dataclass(eq=False)
class _Waiting:
    """A connection whose request is not complete yet."""

    sock: socket.socket
    deadline: float
    head: bytearray = field(default_factory=bytearray)


class HealthServer:
    """Serves /health and /metrics: a selector thread and a pool of workers."""

    def __init__(
        self,
        config: Config,
        _supervisor_status: Callable[[], dict[str, Any]],
        metrics: Registry | None = None,
    ) -> None:
        host, _, port = config.health.listen.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"health.listen: expected host:port, got {config.health.listen!r}")
        section = config.health
        if section.max_connections < 1 or section.workers < 1:
            raise ConfigError("health.max_connections and health.workers must be at least 1")
        self.config = config
        #: where the counters go: the supervisor's registry, so `agentbus status` shows them
        self.metrics = metrics if metrics is not None else Registry(am.AGENT)
        self.max_connections = section.max_connections
        self.timeout = section.connection_timeout
        registry = CollectorRegistry()
        registry.register(_StatusCollector(lambda: collect_status(config, timeout=1.0)))  # type: ignore[arg-type]
        self._answer = _answerer(config, registry)
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, int(port)), family=family, backlog=128)
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector = selectors.DefaultSelector()
        #: connections waiting for their request, oldest first (the first to make room)
        self._waiting: dict[socket.socket, _Waiting] = {}
        #: connections handed to the workers and not closed yet
        self._answering = 0
        self._lock = threading.Lock()
        self._listening = True
        self._accept_resume = 0.0
        self._stopping = False
        self._pool = ThreadPoolExecutor(max_workers=section.workers, thread_name_prefix="health")
        self._log = RateLimitedLog(6)
        self._thread = threading.Thread(target=self._loop, name="health", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._thread.start()
        logger.info("health endpoint on {}/health and /metrics", self.address)

    def stop(self) -> None:
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(5.0)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for waiting in list(self._waiting.values()):
            waiting.sock.close()
        self._waiting.clear()
        self._selector.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()

    # -- the selector thread -----------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping:
            for key, _events in self._selector.select(self._next_timeout()):
                if key.fileobj is self._listener:
                    self._accept()
                elif key.fileobj is self._wake_r:
                    self._drain_wake()
                else:
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    self._read(sock)
            self._expire()

    def _next_timeout(self) -> float | None:
        """Seconds to the next deadline (a connection's, the listener's rest); None: none."""
        deadlines = []
        if self._waiting:
            deadlines.append(next(iter(self._waiting.values())).deadline)  # oldest first
        if not self._listening:
            deadlines.append(self._accept_resume)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(64):
                pass
        except BlockingIOError:
            pass

    def _accept(self) -> None:
        for _ in range(ACCEPT_BURST):
            try:
                sock, _addr = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._drop("accept_error")
                    self._log.warning(
                        "accept", "health endpoint: cannot accept a connection: {}", exc.strerror
                    )
                    self._selector.unregister(self._listener)
                    self._listening = False
                    self._accept_resume = time.monotonic() + ACCEPT_PAUSE
                return  # anything else (the client gave up first): wait for the next
            self.metrics.inc(am.HEALTH_CONNECTIONS)
            if not self._make_room():
                self._drop("refused")
                _close(sock)
                continue
            sock.setblocking(False)
            waiting = _Waiting(sock, time.monotonic() + self.timeout)
            self._waiting[sock] = waiting
            self._selector.register(sock, selectors.EVENT_READ)
            self._read(sock)  # a scraper has usually sent its request already

    def _make_room(self) -> bool:
        """True if one more connection may be held, closing the oldest idle one if need be."""
        with self._lock:
            held = len(self._waiting) + self._answering
        if held < self.max_connections:
            return True
        if not self._waiting:
            return False  # every slot is being answered
        oldest = next(iter(self._waiting))
        self._forget(oldest)
        self._drop("evicted")
        return True

    def _read(self, sock: socket.socket) -> None:
        waiting = self._waiting.get(sock)
        if waiting is None:
            return
        try:
            data = sock.recv(MAX_REQUEST_BYTES + 1 - len(waiting.head))
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the client went away before asking anything
            self._forget(sock)
            return
        waiting.head += data
        if b"\r\n\r\n" in waiting.head or b"\n\n" in waiting.head:
            self._selector.unregister(sock)
            del self._waiting[sock]
            with self._lock:
                self._answering += 1
            self._pool.submit(self._serve, sock, bytes(waiting.head))
        elif len(waiting.head) > MAX_REQUEST_BYTES:
            self._forget(sock)
            self._drop("too_large")

    def _expire(self) -> None:
        now = time.monotonic()
        while self._waiting:
            waiting = next(iter(self._waiting.values()))
            if waiting.deadline > now:
                break
            self._forget(waiting.sock)
            self._drop("timeout")
        if not self._listening and now >= self._accept_resume:
            self._selector.register(self._listener, selectors.EVENT_READ)
            self._listening = True

    def _forget(self, sock: socket.socket) -> None:
        self._waiting.pop(sock, None)
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        _close(sock)

    def _drop(self, reason: str) -> None:
        self.metrics.inc(am.HEALTH_DROPPED, reason=reason)

    # -- the workers -------------------------------------------------------------------
    def _serve(self, sock: socket.socket, head: bytes) -> None:
        try:
            sock.settimeout(self.timeout)  # a client that does not read cannot hold a worker
            sock.sendall(self._answer(head))
        except Exception as exc:  # one bad answer must not take the worker down
            if not isinstance(exc, OSError):
                logger.exception("health endpoint: answering failed")
        finally:
            _close(sock)
            with self._lock:
                self._answering -= 1


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def _answerer(config: Config, registry: CollectorRegistry) -> Callable[[bytes], bytes]:
    """The function turning a request head into the whole HTTP answer."""

    def answer(head: bytes) -> bytes:
        line = head.split(b"\n", 1)[0].strip().split()
        if len(line) != 3 or not line[2].startswith(b"HTTP/"):
            return _response(HTTPStatus.BAD_REQUEST, "text/plain", b"bad request\n")
        method, target = line[0], line[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return _response(HTTPStatus.METHOD_NOT_ALLOWED, "text/plain", b"GET only\n")
        if target == b"/health":
            report = collect_status(config, timeout=1.0)
            body = json.dumps(report["summary"]).encode()
            status = (
                HTTPStatus.OK if report["summary"]["healthy"] else HTTPStatus.SERVICE_UNAVAILABLE
            )
            out = _response(status, "application/json", body)
        elif target == b"/metrics":
            out = _response(HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(registry))
        else:
            out = _response(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")
        if method == b"HEAD":
            out = out.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        return out

    return answer


def _response(status: HTTPStatus, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
