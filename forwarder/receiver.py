"""The forwarder's input: the events PULL socket (fast path) and the ingest ROUTER socket.

One thread reads both sockets, validates and renders every event once
(:mod:`forwarder.render`), gathers them into chunks (:mod:`forwarder.chunker`) and commits
the chunks to the queues (:mod:`forwarder.store`).

- **Fast path** (PULL): events are committed within ``chunk_max_delay``.
- **Acknowledged path** (ROUTER, DEALER or REQ clients): the pending chunk holding the
  request's events is committed before the reply goes out, so ``{"ok": true}`` means "on
  disk". Replies mirror the envelope received (REQ adds an empty delimiter frame).
- **Fairness on the acknowledged path**: requests are read into a queue per client
  identity (bounded in bytes and requests for all clients together: when it is full the
  socket is not read, and the clients feel the high-water marks) and served round-robin,
  one request per client per turn, a client with :data:`INFLIGHT_PER_CLIENT` requests
  waiting for the disk skipping its turn. A client that floods big requests therefore gets
  its share and no more: another client's request is committed behind at most a few of
  the flooder's.
- **Bad input** is rejected by reason (``bus.envelope.REASONS``), counted, logged with
  rate limiting, and never stops the loop; the good events of the same frame go on.
- **Full queue** (``when_full = "block"``): the chunk that did not fit is held, the PULL
  socket is no longer read (collectors feel it through the ZeroMQ high-water marks) and
  ingest requests are answered ``"full"`` until the senders make room. With
  ``drop_oldest`` the store drops the oldest stateless chunks instead.

The loop sleeps in one poll until a frame arrives, a pending chunk is due, the stores
commit or ack (their listener wakes it: replies to send, room for a held chunk), the
caller's ``tick`` is due, or ``stop`` is set (a :class:`bus.sockets.WakeEvent` wakes the
poll; a plain Event is looked at every :data:`STOP_CHECK_SECONDS`). Idle, it does not wake.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack
import zmq
from loguru import logger

from bus.envelope import decode_frame
from bus.errors import InvalidEvent
from bus.sockets import Binding, SocketOptions, Waker, bind, make_socket, poll_ms
from core.logs import RateLimitedLog
from core.metrics import Registry
from forwarder.chunker import Chunk, Chunker
from forwarder.metrics import FORWARDER, REJECTED
from forwarder.render import Renderer
from forwarder.store import Commit, Store

#: frames read from one socket before looking at the other and at the clock
BURST = 2000
#: longest time spent reading the PULL socket before looking at the rest (seconds)
BURST_SECONDS = 0.02
#: longest pause while the events-per-second limit holds reading back (seconds)
RATE_PAUSE_SECONDS = 0.05
KINDS = ("stateless", "stateful")
#: least bytes allowed to wait for the disk before the PULL socket stops being read
MIN_UNCOMMITTED = 4 * 1024 * 1024
#: how often a plain ``threading.Event`` stop flag is looked at (a WakeEvent wakes the poll)
STOP_CHECK_SECONDS = 0.1
#: most frames left waiting in the PULL socket while it is unread (see Receiver.run); the
#: wait also ends before half the socket's receive high-water mark can fill (16 messages
#: with the default byte budget), so a producer is never held up by it — a producer that
#: sends and closes has only its linger to hand its frames over
COALESCE_FRAMES = 100
#: a shorter wait for frames is not worth a wake-up of its own (seconds)
MIN_COALESCE_SECONDS = 0.002
#: how often the arrival rate of frames is taken (seconds)
RATE_WINDOW_SECONDS = 1.0
#: acknowledged requests of one client handed to the stores and not committed yet; its
#: next ones wait for its next turn, so another client's request is committed behind at
#: most this many of a flooding client's (a client that waits for each answer, as
#: bus.client.Ingest does, never has more than one)
INFLIGHT_PER_CLIENT = 2
#: bytes of requests read and not served yet, all clients together (at least two of the
#: largest messages): beyond it the ingest socket is not read until some are served
MIN_INBOX_BYTES = 8 * 1024 * 1024


class RateLimiter:
    """Token bucket over events per second; ``max_eps = 0`` means no limit."""

    def __init__(self, max_eps: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_eps = max_eps
        self._clock = clock
        self._tokens = float(max_eps)
        self._at = clock()

    def wait_time(self) -> float:
        """Seconds to wait before reading more (0 = go on)."""
        if not self.max_eps:
            return 0.0
        now = self._clock()
        self._tokens = min(float(self.max_eps), self._tokens + (now - self._at) * self.max_eps)
        self._at = now
        return 0.0 if self._tokens > 0 else -self._tokens / self.max_eps + 0.001

    def spend(self, events: int) -> None:
        if self.max_eps:
            self._tokens -= events


class Receiver:
    """Reads, validates, chunks and commits; run :meth:`run` in one thread."""

    def __init__(
        self,
        *,
        events_endpoint: str,
        ingest_endpoint: str,
        options: SocketOptions,
        stores: dict[str, Store],
        chunk_max_bytes: int,
        chunk_max_delay: float,
        stateful_chunk_max_bytes: int | None = None,
        check_documents: bool = True,
        max_eps: int = 0,
        reject_log_per_minute: int = 10,
        metrics: Registry | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        self.events_endpoint = events_endpoint
        self.ingest_endpoint = ingest_endpoint
        self.options = options
        self.stores = stores
        self.max_message_bytes = options.max_message_bytes
        self._ctx = context or zmq.Context.instance()
        self._renderer = Renderer(check_documents=check_documents)
        self._chunkers = {
            "stateless": Chunker(chunk_max_bytes, chunk_max_delay),
            # closed before it overflows: a stateful chunk must fit one request
            "stateful": Chunker(stateful_chunk_max_bytes or chunk_max_bytes, chunk_max_delay),
        }
        self._held: dict[str, Chunk] = {}
        #: chunks handed to the stores, oldest first, until they are committed
        self._commits: deque[Commit] = deque()
        self._last_commit: dict[str, Commit] = {}
        #: ingest replies waiting for their commits, by client identity, oldest first:
        #: (commits, frames to send)
        self._replies: dict[bytes, deque[tuple[list[Commit], list[bytes]]]] = {}
        #: ingest requests read and not served yet, by client identity: (frames, bytes)
        self._inbox: dict[bytes, deque[tuple[list[bytes], int]]] = {}
        #: the clients with requests in ``_inbox``, in the order of their next turn
        self._turns: deque[bytes] = deque()
        self._inbox_bytes = self._inbox_count = 0
        self.max_inbox_bytes = max(MIN_INBOX_BYTES, 2 * self.max_message_bytes)
        #: above this many bytes waiting for the disk, the PULL socket is not read
        self.max_uncommitted = max(MIN_UNCOMMITTED, 8 * chunk_max_bytes)
        self._limiter = RateLimiter(max_eps)
        self._log = RateLimitedLog(reject_log_per_minute)
        self._pull: Binding | None = None
        self._router: Binding | None = None
        # the stores wake the loop when a commit or an ack changed what it waits for
        self._waker = Waker()
        for store in stores.values():
            store.add_listener(self._waker.wake)
        #: the forwarder's metrics: rejections are counted there as they happen
        self.metrics = metrics if metrics is not None else Registry(FORWARDER)
        # Figures of the hot loop, written by the receiver thread only and read by the
        # control thread (copied into ``metrics`` when status is asked: no lock per frame).
        self.frames = 0
        self.received = 0
        self.persisted = 0
        self.ingest_requests = 0
        #: while a trickle of frames arrives, the PULL socket is left unread until the
        #: pending chunk is due (time.monotonic()); None: it is read as frames arrive
        self._coalesce_until: float | None = None
        #: frames and bytes per second on the PULL socket, taken every RATE_WINDOW_SECONDS (unknown
        #: at first: frames are read as they come until it is known)
        self._frame_rate = self._byte_rate = float("inf")
        self._rate_since = time.monotonic()
        self._rate_frames = self._rate_bytes = self._pull_bytes = 0
        self.ingest_full = 0
        self.blocked = False

    # -- sockets -------------------------------------------------------------------
    def bind(self) -> None:
        """Bind both sockets now, so a second forwarder is refused at start.

        A socket that fails to bind is closed by :func:`bus.sockets.bind`; if the second
        one fails, the first stays bound until :meth:`close` (the forwarder registers it
        on its service's resources before calling this).
        """
        self._pull = bind(
            make_socket(self._ctx, zmq.PULL, self.options), self.events_endpoint, self.options
        )
        self._router = bind(
            make_socket(self._ctx, zmq.ROUTER, self.options), self.ingest_endpoint, self.options
        )

    def _router_sock(self) -> zmq.Socket:
        assert self._router is not None
        return self._router.sock

    def close(self, linger_ms: int = 0) -> None:
        for binding in (self._pull, self._router):
            if binding is not None:
                binding.close(linger_ms)
        self._waker.close()  # a store's later wake() is a no-op

    # -- the loop ------------------------------------------------------------------
    def run(self, stop: threading.Event, tick: Callable[[], float | None] | None = None) -> None:
        """Receive until ``stop`` is set, then commit what is buffered.

        ``tick()`` is called after every round and returns when it wants to be called
        again (a ``time.monotonic()`` value; None: not before something else happens).
        """
        assert self._pull is not None and self._router is not None
        pull, router = self._pull.sock, self._router.sock
        wakes = hasattr(stop, "fileno")
        both = zmq.Poller()
        ingest_only = zmq.Poller()
        # a poll reports an fd by its number, not by the object registered
        waker = self._waker.fileno()
        for poller in (both, ingest_only):
            poller.register(router, zmq.POLLIN)
            poller.register(waker, zmq.POLLIN)
            if wakes:
                poller.register(stop, zmq.POLLIN)
        both.register(pull, zmq.POLLIN)
        reading_router = True
        next_tick = tick() if tick is not None else None
        try:
            while not stop.is_set():
                if self._held:
                    self._retry_held()
                self._reap()
                wait = self._limiter.wait_time()
                if wait > 0:
                    stop.wait(min(wait, RATE_PAUSE_SECONDS))
                    continue
                paused = bool(self._held) or self._too_much_uncommitted()
                self.blocked = bool(self._held)
                poller = ingest_only if paused or self._coalesce_until is not None else both
                timeout = self._timeout(next_tick)
                if reading_router == self._inbox_full():
                    # a full inbox: leave the requests in the socket until some are served
                    # (a commit wakes the loop through the waker)
                    reading_router = not reading_router
                    for each in (both, ingest_only):
                        each.modify(router, zmq.POLLIN if reading_router else 0)
                if self._servable():
                    timeout = 0.0
                if self._coalesce_until is not None:
                    # the waiting ends at its own deadline even if the chunk it waited for
                    # was committed meanwhile (an acknowledged request takes what is pending)
                    left = max(0.0, self._coalesce_until - time.monotonic())
                    timeout = left if timeout is None else min(timeout, left)
                if not wakes and (timeout is None or timeout > STOP_CHECK_SECONDS):
                    timeout = STOP_CHECK_SECONDS  # a plain Event cannot wake the poll
                ready = dict(poller.poll(poll_ms(timeout)))
                if waker in ready:
                    # before the next round looks at the commits and the room, so a
                    # wake-up that comes meanwhile is not lost
                    self._waker.drain()
                if router in ready:
                    self._read_ingest(router)
                if self._turns:
                    self._serve_ingest()
                coalesced = (
                    self._coalesce_until is not None and time.monotonic() >= self._coalesce_until
                )
                if (pull in ready or coalesced) and not paused:
                    # Interrupt coalescing: at a trickle (a few frames per read) the frames
                    # wait in the socket until the pending chunk is due, then go into it
                    # together — one wake-up per chunk instead of one per frame. The wait
                    # is bounded by chunk_max_delay, so a rise in the rate is noticed
                    # within it (and then reads of many frames keep the socket watched).
                    read = self._drain_pull(pull)
                    if coalesced and read >= self._pile_up_frames(pull):
                        # Frames piled up while we waited: a burst. Read them as they
                        # come, and take the rate anew before waiting again.
                        self._measure_rate_anew()
                    hold = None if coalesced else self._coalesce_wait(pull)
                    self._coalesce_until = None if hold is None else time.monotonic() + hold
                elif self._coalesce_until is not None and paused:
                    self._coalesce_until = None
                self._commit_due()
                if tick is not None:
                    next_tick = tick()
        finally:
            if self._coalesce_until is not None and not self._held:
                self._drain_pull(pull)  # what waited for its chunk's time goes in too
            self.flush(force=True)

    @property
    def waiting_for_frames(self) -> bool:
        """Whether the PULL socket is left unread until the pending chunk is due."""
        return self._coalesce_until is not None

    def _pile_up_frames(self, pull: zmq.Socket) -> int:
        """Frames read at once after a wait that say the rate rose (the socket filled)."""
        hwm = int(pull.getsockopt(zmq.RCVHWM))
        return min(COALESCE_FRAMES, hwm) if hwm > 0 else COALESCE_FRAMES

    def _coalesce_wait(self, pull: zmq.Socket) -> float | None:
        """How long to leave the PULL socket unread: until the pending chunk is due, or
        sooner, before half the frames the socket holds can arrive at the measured rate;
        None: read as frames come (a burst, or no rate known, or nothing pending)."""
        pending = self._timeout(None)
        if pending is None or not self._trickle():
            return None
        room = self._pile_up_frames(pull) / 2
        wait = pending if self._frame_rate <= 0 else min(pending, room / self._frame_rate)
        return wait if wait >= MIN_COALESCE_SECONDS else None

    def _trickle(self) -> bool:
        """Whether frames arrive slowly enough to wait for them until a chunk is due:
        fewer than COALESCE_FRAMES per ``chunk_max_delay`` at the last measured rate."""
        now = time.monotonic()
        elapsed = now - self._rate_since
        if elapsed >= 2 * RATE_WINDOW_SECONDS:
            # The window spans a pause: its rate says nothing of what arrives now (a
            # burst after a quiet spell). Measure again.
            self._measure_rate_anew()
        elif elapsed >= RATE_WINDOW_SECONDS:
            self._frame_rate = (self.frames - self._rate_frames) / elapsed
            self._byte_rate = (self._pull_bytes - self._rate_bytes) / elapsed
            self._rate_since, self._rate_frames = now, self.frames
            self._rate_bytes = self._pull_bytes
        chunker = self._chunkers["stateless"]
        return (
            self._frame_rate * chunker.max_delay < COALESCE_FRAMES
            # chunks that would close by size anyway gain nothing from waiting
            and self._byte_rate * chunker.max_delay < chunker.max_bytes / 4
        )

    def _measure_rate_anew(self) -> None:
        """No waiting for frames until a whole RATE_WINDOW_SECONDS has been measured."""
        self._frame_rate = self._byte_rate = float("inf")
        self._rate_since, self._rate_frames = time.monotonic(), self.frames
        self._rate_bytes = self._pull_bytes

    def _timeout(self, next_tick: float | None) -> float | None:
        """Seconds until the next thing due without a wake-up: a pending chunk's
        ``chunk_max_delay`` or the caller's tick; None: nothing (wait for a wake-up)."""
        deadlines = [c.deadline() for c in self._chunkers.values()]
        deadlines.append(next_tick)
        due = [d for d in deadlines if d is not None]
        if not due:
            return None
        return max(0.0, min(due) - time.monotonic())

    def _drain_pull(self, pull: zmq.Socket) -> int:
        """Read the frames waiting on the PULL socket; returns how many were read."""
        # Bounded in frames and in time, so ingest requests, due chunks and commits are
        # looked at often even under a flood of big frames.
        until = time.monotonic() + BURST_SECONDS
        for i in range(BURST):
            if i & 63 == 63 and time.monotonic() > until:
                return i
            try:
                frame = pull.recv(zmq.NOBLOCK)
            except zmq.Again:
                return i
            self.frames += 1
            self._pull_bytes += len(frame)
            if pull.get(zmq.RCVMORE):
                while pull.get(zmq.RCVMORE):
                    pull.recv()
                self._reject("multipart", "a bus message must be one frame", -1, "events")
                continue
            self._take_frame(frame)
            if self._held or self._limiter.max_eps and self._limiter.wait_time() > 0:
                return i + 1
            if self._commits and self._too_much_uncommitted():
                return i + 1
        return BURST

    def _take_frame(self, frame: bytes) -> None:
        try:
            objs = decode_frame(frame, self.max_message_bytes)
        except InvalidEvent as exc:
            self._reject(exc.reason, exc.message, -1, "events")
            return
        render = self._renderer.render
        stateless = self._chunkers["stateless"]
        good = 0
        for obj in objs:
            try:
                stateful, lines = render(obj)
            except InvalidEvent as exc:
                self._reject(exc.reason, exc.message, -1, "events")
                continue
            good += 1
            if stateful:
                self._add_stateful(lines)
            else:
                stateless.add(lines)
                if stateless.full():
                    self._commit("stateless")
        self.received += good
        self._limiter.spend(len(objs))

    # -- acknowledged path -----------------------------------------------------------
    def _read_ingest(self, router: zmq.Socket) -> None:
        """Move the requests waiting on the ROUTER socket into their clients' queues."""
        inbox = self._inbox
        for _ in range(BURST):
            if self._inbox_full():
                return
            try:
                msg = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.ingest_requests += 1
            client = msg[0]
            queue = inbox.get(client)
            if queue is None:
                # A client with nothing queued goes before those with a backlog (which
                # were served a moment ago): a client that waits for each answer is
                # served next, not after another round of the flooder's.
                queue = inbox[client] = deque()
                self._turns.appendleft(client)
            nbytes = sum(len(f) for f in msg)
            queue.append((msg, nbytes))
            self._inbox_bytes += nbytes
            self._inbox_count += 1

    def _inbox_full(self) -> bool:
        return self._inbox_bytes >= self.max_inbox_bytes or self._inbox_count >= BURST

    def _may_serve(self, client: bytes) -> bool:
        replies = self._replies.get(client)
        return replies is None or len(replies) < INFLIGHT_PER_CLIENT

    def _servable(self) -> bool:
        """Whether a queued request may be served now (its client has room in flight)."""
        return any(self._may_serve(c) for c in self._turns)

    def _serve_ingest(self) -> None:
        """One round of turns: a queued request of each client, skipping the clients with
        INFLIGHT_PER_CLIENT requests waiting for the disk."""
        turns, inbox = self._turns, self._inbox
        # One turn each, then back to the socket: a client that connects meanwhile gets
        # its turn after at most one request of every other client.
        for _ in range(len(turns)):
            client = turns.popleft()
            if not self._may_serve(client):
                turns.append(client)
                continue
            queue = inbox[client]
            msg, nbytes = queue.popleft()
            self._inbox_bytes -= nbytes
            self._inbox_count -= 1
            if queue:
                turns.append(client)
            else:
                del inbox[client]
            self._serve(msg)

    def _serve(self, msg: list[bytes]) -> None:
        """Answer one request now, or once the chunks holding its events are on disk."""
        reply_to, answer, commits = self._answer(msg)
        frames = [*reply_to, msgpack.packb(answer)]
        client = reply_to[0]
        waiting = self._replies.get(client)
        if not commits and not waiting:
            # Nothing to commit (refused, "full") and no earlier answer of this client
            # pending: answer now, not behind other clients' commits (a full disk
            # holds those for as long as it stays full).
            self._send_reply(frames)
        else:
            # The reply waits for the commit of the chunks holding the request's
            # events (one client's answers never overtake each other).
            if waiting is None:
                waiting = self._replies[client] = deque()
            waiting.append((commits, frames))
        self._reap()

    def _answer(self, msg: list[bytes]) -> tuple[list[bytes], dict[str, Any], list[Commit]]:
        identity = msg[0]
        if len(msg) == 2:
            envelope, payload = [identity], msg[1]
        elif len(msg) == 3 and msg[1] == b"":
            envelope, payload = [identity, b""], msg[2]
        else:
            envelope = [identity, b""] if len(msg) > 1 and msg[1] == b"" else [identity]
            text = f"a request must be one frame, got {len(msg) - len(envelope)}"
            return envelope, self._frame_error("multipart", text), []
        try:
            objs = decode_frame(payload, self.max_message_bytes)
        except InvalidEvent as exc:
            return envelope, self._frame_error(exc.reason, exc.message), []
        good: list[tuple[bool, bytes]] = []
        rejected: list[dict[str, Any]] = []
        for index, obj in enumerate(objs):
            try:
                good.append(self._renderer.render(obj))
            except InvalidEvent as exc:
                self._reject(exc.reason, exc.message, index, "ingest")
                rejected.append({"index": index, "reason": exc.reason, "message": exc.message})
        self._limiter.spend(len(objs))
        commits: list[Commit] = []
        if good:
            accepted = self._accept(good)
            if accepted is None:
                self.ingest_full += 1
                return envelope, {"ok": False, "accepted": 0, "error": "full"}, []
            commits = accepted
        self.received += len(good)
        if rejected:
            answer = {
                "ok": False,
                "accepted": len(good),
                "error": "rejected",
                "rejected": rejected,
            }
            return envelope, answer, commits
        return envelope, {"ok": True, "accepted": len(good)}, commits

    def _accept(self, good: list[tuple[bool, bytes]]) -> list[Commit] | None:
        """Hand the events (with what is pending) to the stores now; None if a queue is
        full. The reply must wait for the returned commits."""
        need = {"stateless": 0, "stateful": 0}
        for stateful, lines in good:
            need["stateful" if stateful else "stateless"] += len(lines) + 1
        kinds = [k for k in KINDS if need[k]]
        for kind in kinds:
            if kind in self._held:
                return None
            if self.stores[kind].failing:
                # The disk refuses writes (full, I/O error): say so now rather than hold
                # the reply for a commit that may take hours.
                return None
            if not self.stores[kind].has_room(need[kind] + self._chunkers[kind].nbytes):
                return None
        commits: list[Commit] = []
        stateless = self._chunkers["stateless"]
        held = False
        for stateful, lines in good:
            if not stateful:
                stateless.add(lines)
            elif not self._add_stateful(lines, commits):
                held = True
        for kind in kinds:
            if held or not self._commit(kind):
                # Held (a race with another writer): the events will be committed later,
                # but the client must not count on them.
                return None
            commits.append(self._last_commit[kind])
        return commits

    def _add_stateful(self, lines: bytes, commits: list[Commit] | None = None) -> bool:
        """Add a stateful event, committing the pending chunk first if the event would
        overflow it; False when that chunk had to be held. ``commits`` collects the
        commits made."""
        chunker = self._chunkers["stateful"]
        if chunker.overflows(len(lines)):
            if not self._commit("stateful"):
                chunker.add(lines)
                return False
            if commits is not None:
                commits.append(self._last_commit["stateful"])
        chunker.add(lines)
        if commits is None and chunker.full():
            return self._commit("stateful")
        return True

    def _frame_error(self, reason: str, message: str) -> dict[str, Any]:
        self._reject(reason, message, -1, "ingest")
        return {
            "ok": False,
            "accepted": 0,
            "error": reason,
            "rejected": [{"index": -1, "reason": reason, "message": message}],
        }

    def _reject(self, reason: str, message: str, index: int, where: str) -> None:
        self.metrics.inc(REJECTED, reason=reason)
        self._log.warning(
            f"rejected:{where}:{reason}", "rejected input on {} ({}): {}", where, reason, message
        )

    # -- committing ------------------------------------------------------------------
    def _commit(self, kind: str) -> bool:
        """Hand the pending chunk of ``kind`` to its store; False if it had to be held."""
        if kind in self._held:
            return False
        chunk = self._chunkers[kind].take()
        if chunk is None:
            return True
        return self._put(kind, chunk)

    def _put(self, kind: str, chunk: Chunk, force: bool = False) -> bool:
        commit = self.stores[kind].submit(chunk, force=force)
        if commit is None:
            self._held[kind] = chunk
            return False
        self._held.pop(kind, None)
        self._commits.append(commit)
        self._last_commit[kind] = commit
        return True

    def _retry_held(self) -> None:
        for kind, chunk in list(self._held.items()):
            if self._put(kind, chunk):
                self._commit(kind)

    def _reap(self) -> None:
        """Count committed chunks; send the ingest replies whose chunks are on disk."""
        commits = self._commits
        while commits and commits[0].done:
            self.persisted += commits.popleft().chunk.events
        if not self._replies:
            return
        # per client, so one client's answers wait only for its own earlier ones
        for client, replies in list(self._replies.items()):
            while replies and all(c.done for c in replies[0][0]):
                self._send_reply(replies.popleft()[1])
            if not replies:
                del self._replies[client]

    def _send_reply(self, frames: list[bytes]) -> None:
        try:
            self._router_sock().send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the client went away: nothing to tell it
            logger.debug("ingest reply not delivered: {}", exc)

    def _too_much_uncommitted(self) -> bool:
        return any(s.uncommitted_bytes > self.max_uncommitted for s in self.stores.values())

    def _commit_due(self) -> None:
        now = time.monotonic()
        for kind, chunker in self._chunkers.items():
            if chunker.due(now):
                self._commit(kind)

    def flush(self, *, force: bool = False, timeout: float = 30.0) -> None:
        """Commit everything buffered and wait for it; ``force`` ignores the byte limit (at
        shutdown a little over the limit is better than losing events)."""
        for kind in KINDS:
            held = self._held.get(kind)
            if held is not None and not self._put(kind, held, force=force):
                continue
            chunk = self._chunkers[kind].take()
            if chunk is not None:
                self._put(kind, chunk, force=force)
        deadline = time.monotonic() + timeout
        for commit in list(self._commits):
            commit.wait(max(0.0, deadline - time.monotonic()))
        self._reap()

    def figures(self) -> dict[str, Any]:
        """The hot loop's figures, by metric name (forwarder.metrics.RECEIVER_FIGURES)."""
        return {
            "frames": self.frames,
            "received": self.received,
            "persisted": self.persisted,
            "ingest_requests": self.ingest_requests,
            "ingest_full": self.ingest_full,
            "ingest_waiting": self._inbox_count,
            "blocked": self.blocked,
        }
