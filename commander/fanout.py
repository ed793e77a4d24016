"""Fan-out: publish commands to executors by topic until one acknowledges, watch deadlines.

The PUB socket is an XPUB (the same wire for subscribers): it tells the commander when a
subscriber subscribes to a topic, and every command of that topic still waiting for an ack
is published again at once. That beats the PUB/SUB slow-joiner (a message published
before the subscription reached the publisher is silently lost) without a fixed sleep;
the periodic republish (``republish_interval``) covers everything else.

Which topics are *live* comes from the executors' ``hello`` messages
(:class:`ExecutorTable`): a command for a topic without a live executor is answered with
result 1 — after a short start-up grace, because right after the commander (re)starts the
executors have not said hello yet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import msgpack
import zmq

from bus.results import ResultCode
from commander.command import ServerCommand
from commander.metrics import EXECUTORS_REFUSED
from commander.results import Hello
from core.config import Config
from core.logs import RateLimitedLog
from core.metrics import Registry

#: expired executors are forgotten at most this often (seconds; and when the table is full)
PRUNE_SECONDS = 5.0


class ExecutorTable:
    """Executors seen recently, indexed by topic (monotonic times; thread-safe).

    ``topic → executor → last hello``, so whether a topic is live costs the executors of
    that topic, not a scan of every hello ever heard. Bounded: at most ``max_executors``
    executors and ``max_topics_per_executor`` live topics each; a hello beyond either is
    refused (counted by reason, logged rate-limited) and the executors already known keep
    working. Entries older than ``ttl`` are pruned.
    """

    def __init__(
        self,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_executors: int = 256,
        max_topics_per_executor: int = 64,
        metrics: Registry | None = None,
        log_per_minute: int = 10,
    ) -> None:
        self.ttl = ttl
        self.max_executors = max_executors
        self.max_topics_per_executor = max_topics_per_executor
        self._clock = clock
        self._lock = threading.Lock()
        #: topic → executor name → monotonic time of its last hello naming the topic
        self._topics: dict[str, dict[str, float]] = {}
        #: executor name → topic → the same time (for pruning and the per-executor cap)
        self._executors: dict[str, dict[str, float]] = {}
        self._next_prune = clock() + min(ttl, PRUNE_SECONDS)
        self._metrics = metrics
        self._log = RateLimitedLog(log_per_minute)
        #: refused hellos by reason (also counted in ``metrics`` when given)
        self.refused: dict[str, int] = {}

    @classmethod
    def from_config(cls, config: Config, metrics: Registry | None = None) -> ExecutorTable:
        cfg = config.commander
        return cls(
            cfg.executor_ttl,
            max_executors=cfg.max_executors,
            max_topics_per_executor=cfg.max_topics_per_executor,
            metrics=metrics,
            log_per_minute=config.bus.reject_log_per_minute,
        )

    def hello(self, hello: Hello) -> list[str]:
        """Record a hello; returns the topics that were not live before it (none when the
        hello is refused)."""
        topics = list(dict.fromkeys(hello.topics))  # once each, in order
        now = self._clock()
        limit = now - self.ttl
        with self._lock:
            if now >= self._next_prune:
                self._prune(limit, now)
            refused = ""
            mine = self._executors.get(hello.executor)
            if mine is None and len(self._executors) >= self.max_executors:
                self._prune(limit, now)  # room may have expired since the last pruning
                if len(self._executors) >= self.max_executors:
                    refused = "too_many_executors"
            if not refused:
                live = {t for t, seen in (mine or {}).items() if seen >= limit}
                if len(live.union(topics)) > self.max_topics_per_executor:
                    refused = "too_many_topics"
            if not refused:
                new = [t for t in topics if not self._live(t, limit)]
                mine = self._executors.setdefault(hello.executor, {})
                for topic in topics:
                    mine[topic] = now
                    self._topics.setdefault(topic, {})[hello.executor] = now
                return new
            self.refused[refused] = self.refused.get(refused, 0) + 1
        if self._metrics is not None:
            self._metrics.inc(EXECUTORS_REFUSED, reason=refused)
        self._log.warning(
            f"hello:{refused}",
            "commander: refused the hello of executor {} ({} topics): {} (limits: "
            "[commander] max_executors = {}, max_topics_per_executor = {})",
            hello.executor,
            len(topics),
            refused,
            self.max_executors,
            self.max_topics_per_executor,
        )
        return []

    def is_live(self, topic: str) -> bool:
        limit = self._clock() - self.ttl
        with self._lock:
            return self._live(topic, limit)

    def live(self) -> dict[str, list[str]]:
        """Live executors: name → topics (forgets the expired ones)."""
        now = self._clock()
        with self._lock:
            self._prune(now - self.ttl, now)
            return {name: sorted(topics) for name, topics in sorted(self._executors.items())}

    def __len__(self) -> int:
        """Executors known (live, or expired and not pruned yet)."""
        with self._lock:
            return len(self._executors)

    def _live(self, topic: str, limit: float) -> bool:
        seen = self._topics.get(topic)
        return seen is not None and any(t >= limit for t in seen.values())

    def _prune(self, limit: float, now: float) -> None:
        """Forget every (executor, topic) older than ``limit``; the lock is held."""
        self._next_prune = now + min(self.ttl, PRUNE_SECONDS)
        for name, topics in list(self._executors.items()):
            for topic, seen in list(topics.items()):
                if seen >= limit:
                    continue
                del topics[topic]
                by_topic = self._topics[topic]
                del by_topic[name]
                if not by_topic:
                    del self._topics[topic]
            if not topics:
                del self._executors[name]


@dataclass(slots=True)
class Flight:
    """A command between receipt and its final result, as the fan-out sees it."""

    command: ServerCommand
    acked: bool = False
    published: int = 0
    #: monotonic time of the next publication (0 = as soon as possible)
    next_publish: float = 0.0
    #: an executor reported "in progress" (2); keep waiting for the final result
    progress: bool = False
    executors: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A final result the commander decides itself (no executor, timeout)."""

    document_id: str
    code: ResultCode
    message: str
    reason: str  # label of commander.metrics.VERDICTS: no_executor | timeout_unacked | timeout_no_result


class Fanout:
    """Owns the XPUB socket and every command in flight (used from one thread only)."""

    def __init__(
        self,
        sock: zmq.Socket,
        executors: ExecutorTable,
        *,
        republish_interval: float,
        hello_grace: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.sock = sock
        self.executors = executors
        self.republish_interval = republish_interval
        self._clock = clock
        self._wall = wall
        self._grace_until = clock() + hello_grace
        self.flights: dict[str, Flight] = {}
        #: how many publications (first ones and repeats) were made
        self.publications = 0

    def add(self, command: ServerCommand, *, acked: bool = False) -> Flight:
        flight = Flight(command, acked=acked)
        self.flights[command.document_id] = flight
        return flight

    def remove(self, document_id: str) -> Flight | None:
        return self.flights.pop(document_id, None)

    def ack(self, document_id: str) -> Flight | None:
        flight = self.flights.get(document_id)
        if flight is not None:
            flight.acked = True
        return flight

    def on_subscription(self, frame: bytes) -> None:
        """An XPUB subscription message: republish that topic's unacknowledged commands."""
        if not frame or frame[0] != 1:
            return  # an unsubscription
        topic = frame[1:].decode(errors="replace")
        for flight in self.flights.values():
            if not flight.acked and flight.published and flight.command.topic == topic:
                flight.next_publish = 0.0

    def on_live(self, topics: list[str]) -> None:
        """Topics that just became live: their waiting commands may go now."""
        for flight in self.flights.values():
            if not flight.acked and flight.command.topic in topics:
                flight.next_publish = 0.0

    def tick(self) -> tuple[list[Flight], list[Verdict]]:
        """Publish what is due; returns (first publications, verdicts to report)."""
        now, wall = self._clock(), self._wall()
        first: list[Flight] = []
        verdicts: list[Verdict] = []
        for doc, flight in list(self.flights.items()):
            cmd = flight.command
            if wall >= cmd.deadline:
                verdicts.append(self._timeout(flight))
                del self.flights[doc]
                continue
            if flight.acked or now < flight.next_publish:
                continue
            if not self.executors.is_live(cmd.topic):
                if flight.published or now < self._grace_until:
                    # Once published, keep trying until the deadline (the executor may be
                    # restarting); before the first hello, wait for the start-up grace.
                    flight.next_publish = now + self.republish_interval
                    if not flight.published:
                        flight.next_publish = min(flight.next_publish, self._grace_until)
                    continue
                verdicts.append(
                    Verdict(
                        doc,
                        ResultCode.FAILURE,
                        f"no executor for module {cmd.topic}",
                        "no_executor",
                    )
                )
                del self.flights[doc]
                continue
            self._publish(flight, wall)
            if flight.published == 1:
                first.append(flight)
            flight.next_publish = now + self.republish_interval
        return first, verdicts

    def next_wakeup(self) -> float | None:
        """Seconds until :meth:`tick` has something to do (publication or deadline).

        None when nothing is in flight: then only a message or the mailbox brings work.
        """
        if not self.flights:
            return None
        now, wall = self._clock(), self._wall()
        soonest = float("inf")
        for flight in self.flights.values():
            soonest = min(soonest, flight.command.deadline - wall)
            if not flight.acked:
                soonest = min(soonest, flight.next_publish - now)
        return max(0.0, soonest)

    def _publish(self, flight: Flight, wall: float) -> None:
        cmd = flight.command
        body = msgpack.packb(cmd.bus_message(wall), use_bin_type=True)
        try:
            self.sock.send_multipart([cmd.topic.encode(), body], zmq.NOBLOCK)
        except zmq.Again:
            return  # cannot happen on (X)PUB, which drops at the high-water mark instead
        flight.published += 1
        self.publications += 1

    def _timeout(self, flight: Flight) -> Verdict:
        cmd = flight.command
        if flight.acked:
            return Verdict(
                cmd.document_id,
                ResultCode.TIMEOUT,
                f"no result from the executor of module {cmd.topic} within {cmd.timeout:g}s",
                "timeout_no_result",
            )
        return Verdict(
            cmd.document_id,
            ResultCode.TIMEOUT,
            f"no executor of module {cmd.topic} took the command within {cmd.timeout:g}s",
            "timeout_unacked",
        )
