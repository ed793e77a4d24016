"""The forwarder service: receive → chunk → persist → batch → send, durable and fast.

``Forwarder(config).run()`` follows the common service lifecycle:

- ``startup``: open the queues (``queue/stateless.db``, ``queue/stateful.db``) and the
  quarantine (``queue/quarantine.db``) in the data dir — chunks left unacked by a previous
  run are sent again —, bind the events and ingest sockets, start the senders;
- ``main_loop``: the receiver loop, in the main thread;
- ``shutdown``: the receiver has stopped reading and committed what it buffered; senders
  finish the request in flight (or abandon it at the deadline: its chunks are still in
  the queue and go again after a restart).

The control socket answers ``status`` and the quarantine commands (``quarantine_list``,
``quarantine_retry``, ``quarantine_drop``) used by ``agentbus quarantine``.
"""

from __future__ import annotations

import ctypes
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from loguru import logger

from bus.sockets import WakeEvent
from comms.credentials import comms_url, load_credentials
from comms.errors import NotEnrolled
from core.config import Config
from core.service import Service
from core.storage import open_or_move_aside
from forwarder import metrics as fm
from forwarder.backoff import Backoff
from forwarder.batcher import Batcher
from forwarder.chunker import Chunk
from forwarder.link import ServerLink
from forwarder.quarantine import Quarantine
from forwarder.receiver import KINDS, Receiver
from forwarder.sender import AGENT_LINE_RESERVE, Sender
from forwarder.store import Store

_T = TypeVar("_T")

#: GIL switch interval of the forwarder process (seconds; Python's default is 0.005)
SWITCH_INTERVAL = 0.0005
#: quarantine entries listed per request at most
MAX_LIST = 1000
#: quarantine entries moved per chunk when retried
RETRY_CHUNK = 500


class Forwarder(Service):
    name = "forwarder"
    declared = fm.FORWARDER

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        # The receiver waits in one poll with no timeout: this event, set along with
        # stop_event (a signal, fail(), request_stop()), wakes that poll.
        self._stop_wake = WakeEvent()
        self.stop_event.also_set(self._stop_wake)
        self.stores: dict[str, Store] = {}
        self.senders: dict[str, Sender] = {}
        self.quarantine: Quarantine | None = None
        self.receiver: Receiver | None = None
        self.link: ServerLink | None = None
        #: when the next upkeep is due (None: nothing happened since the last one)
        self._next_upkeep: float | None = None
        #: the stores' commits and rows at the last upkeep (None: before the first)
        self._upkeep_mark: tuple[int, ...] | None = None
        #: problems met opening the queue files (shown by status)
        self.queue_errors: list[str] = []

    # -- lifecycle -------------------------------------------------------------------
    def startup(self) -> None:
        fw = self.config.forwarder
        try:  # refuse plain http to a remote server at start, as the commander does (exit 2)
            comms_url(self.config, load_credentials(self.config.data_dir))
        except NotEnrolled:
            pass  # the senders wait for credentials
        # The receiver thread is CPU-bound; the writer and sender threads wake from I/O
        # and need the GIL back. With the default 5 ms switch interval each of their many
        # small hand-overs waits up to 5 ms (a convoy); 0.5 ms keeps them flowing.
        sys.setswitchinterval(SWITCH_INTERVAL)
        queue_dir = self.config.data_dir / "queue"
        # Each thing opened is registered on self.resources at once: a failed start (a
        # corrupt quarantine, a bus socket in use) releases exactly what was opened. They
        # are released last opened, first: senders, receiver, quarantine, queues.
        stack = self.resources
        stack.callback(self._stop_wake.close)  # released last: the receiver polls it
        self.stores["stateless"] = self._open(
            queue_dir / "stateless.db",
            lambda: Store(
                queue_dir,
                "stateless",
                max_bytes=fw.max_queue_bytes,
                drop_oldest=fw.when_full == "drop_oldest",
            ),
        )
        stack.callback(self._close_store, self.stores["stateless"])
        # Stateful events are never dropped: the documents would silently diverge.
        self.stores["stateful"] = self._open(
            queue_dir / "stateful.db",
            lambda: Store(queue_dir, "stateful", max_bytes=fw.max_queue_bytes),
        )
        stack.callback(self._close_store, self.stores["stateful"])
        self.quarantine = self._open(
            queue_dir / "quarantine.db", lambda: Quarantine(queue_dir / "quarantine.db")
        )
        stack.callback(self.quarantine.close)
        for kind, store in self.stores.items():
            if store.events:
                logger.info(
                    "resuming {} {} event(s) ({} bytes) left in the queue",
                    store.events,
                    kind,
                    store.bytes,
                )
        self.receiver = Receiver(
            events_endpoint=self.endpoints.events,
            ingest_endpoint=self.endpoints.ingest,
            options=self.socket_options,
            stores=self.stores,
            chunk_max_bytes=fw.chunk_max_bytes,
            chunk_max_delay=fw.chunk_max_delay,
            stateful_chunk_max_bytes=stateful_chunk_bytes(
                fw.chunk_max_bytes, fw.stateful_batch_max_bytes
            ),
            check_documents=fw.check_documents,
            max_eps=fw.max_eps,
            reject_log_per_minute=self.config.bus.reject_log_per_minute,
            metrics=self.metrics,
        )
        # The receiver committed its buffered events when its loop ended; closing it
        # only releases its sockets (whichever of them bind() had bound).
        stack.callback(self.receiver.close, 0)
        self.receiver.bind()
        self.link = ServerLink(self.config, pool_size=fw.stateless_in_flight + 2)
        for kind, store in self.stores.items():
            stateful = kind == "stateful"
            max_bytes = fw.stateful_batch_max_bytes if stateful else fw.batch_max_bytes
            self.senders[kind] = Sender(
                kind,
                store=store,
                batcher=Batcher(
                    store,
                    max_bytes=max_bytes,
                    max_events=fw.batch_max_events,
                    interval=fw.batch_interval,
                ),
                backoff=Backoff(fw.backoff_initial, fw.backoff_max),
                quarantine=self.quarantine,
                client=self.link.client,
                agent_line=self.link.agent_line,
                workers=fw.stateless_in_flight,
                # a hard bound for stateful: the 6.0 server parses each received piece
                # of a request on its own (docs/protocol.md, "Events")
                max_body=max_bytes if stateful else None,
                # a final refusal of our credentials: the data stays queued for a
                # corrected key
                on_fatal=self.fail,
            )
        stack.callback(self._stop_senders)
        for sender in self.senders.values():
            sender.start()

    def _open(self, path: Path, opener: Callable[[], _T]) -> _T:
        """Open a queue file; a corrupt one is moved aside and a fresh one started
        (:func:`core.storage.open_or_move_aside`): its events are lost, the others flow."""
        return open_or_move_aside(
            path,
            opener,
            on_moved_aside=self._queue_moved_aside,
            what="queue file",
            fresh="an empty queue",
        )

    def _queue_moved_aside(self, message: str) -> None:
        logger.error(message)
        self.metrics.inc(fm.QUEUES_MOVED_ASIDE)
        self.queue_errors.append(message)
        self.metrics.fact("queue_errors", list(self.queue_errors))

    def main_loop(self) -> None:
        assert self.receiver is not None
        self.receiver.run(self._stop_wake, tick=self._upkeep)

    # Stopping: everything startup() opened is on self.resources (no shutdown() of its own).
    def _stop_senders(self) -> None:
        for sender in self.senders.values():
            sender.request_stop()
        finished = all([sender.join(self.stop_deadline) for sender in self.senders.values()])
        if not finished:
            logger.warning(
                "a request was still in flight at the stop deadline; its events stay "
                "queued and are sent again at the next start"
            )

    def _close_store(self, store: Store) -> None:
        if not store.close(self.stop_deadline):
            logger.error("the {} queue could not commit everything before the deadline", store.kind)

    def _upkeep(self) -> float | None:
        """Clear acked rows and trim the heap ``clear_acked_interval`` after the first
        commit or ack since the last upkeep; returns when it is due (the receiver's
        tick). Idle, nothing is due: the forwarder does not wake for it."""
        mark = tuple(n for store in self.stores.values() for n in (store.commits, store.rows))
        now = time.monotonic()
        if self._next_upkeep is None:
            if mark == self._upkeep_mark:
                return None
            self._next_upkeep = now + self.config.forwarder.clear_acked_interval
        if now < self._next_upkeep:
            return self._next_upkeep
        self._next_upkeep = None
        self._upkeep_mark = mark
        _malloc_trim()
        for store in self.stores.values():
            try:
                store.clear_acked()
            except Exception as exc:  # upkeep must never stop the receiver
                logger.warning("clearing acked rows of {} failed: {}", store.kind, exc)
        return None

    # -- status ------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The declared metrics (forwarder/metrics.py), each queue's facts, auth."""
        m = self.metrics
        if self.receiver is not None:
            figures = self.receiver.figures()
            for metric in fm.RECEIVER_FIGURES:
                m.set(metric, figures[metric.name])
        queues: dict[str, dict[str, Any]] = {}
        errors: list[tuple[float, str]] = []
        requests: dict[str, int] = {}
        for kind in KINDS:
            store, sender = self.stores.get(kind), self.senders.get(kind)
            if store is None or sender is None:
                continue
            q = queues[kind] = {**store.figures(), **sender.figures()}
            for metric in fm.QUEUES.metrics:
                if metric.labels:
                    m.set_many(metric, q[metric.name], queue=kind)
                elif q.get(metric.name) is not None:
                    m.set(metric, q[metric.name], queue=kind)
            for status, n in q["requests"].items():
                requests[status] = requests.get(status, 0) + n
            if q["last_error"]:
                errors.append((q["last_error_at"] or 0.0, q["last_error"]))
        for total, per_queue in fm.TOTALS.items():
            m.set(total, sum(q[per_queue.name] for q in queues.values()))
        m.set(fm.DROPPED, sum(q[fm.Q_DROPPED.name] for q in queues.values()))
        m.set_many(fm.REQUESTS, requests)
        m.set(fm.QUEUE_EVENTS, sum(q["events"] for q in queues.values()))
        m.set(fm.QUEUE_BYTES, sum(q["bytes"] for q in queues.values()))
        ages = [q["oldest_age"] for q in queues.values() if q["oldest_age"] is not None]
        m.set(fm.BACKOFF, max((q["backoff"] for q in queues.values()), default=0.0))
        if self.quarantine is not None:
            m.set(fm.QUARANTINE_EVENTS, self.quarantine.count())
        out = m.snapshot()
        out[fm.OLDEST_EVENT_AGE.name] = max(ages) if ages else None
        # each queue's facts (last errors, times) next to its metrics
        for kind, q in queues.items():
            row = out[fm.QUEUES.key].setdefault(kind, {})
            row.update({k: v for k, v in q.items() if k not in row})
        for store in self.stores.values():
            if store.last_error:
                errors.append((store.last_error_at or 0.0, store.last_error))
        if errors and "last_error" not in out:
            out["last_error_at"], out["last_error"] = max(errors)
        if self.link is not None:
            out[fm.TOKEN_EXPIRES_IN.name] = self.link.token_expires_in()
            out["auth"] = self.link.auth_status()
        else:
            out[fm.TOKEN_EXPIRES_IN.name] = None
        return out

    # -- control commands --------------------------------------------------------------
    def control_handlers(self) -> dict[str, Any]:
        handlers = super().control_handlers()
        handlers.update(
            {
                "quarantine_list": self._q_list,
                "quarantine_retry": self._q_retry,
                "quarantine_drop": self._q_drop,
            }
        )
        return handlers

    def _q_list(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.quarantine is not None
        limit = min(int(req.get("limit", 100)), MAX_LIST)
        entries = self.quarantine.entries(limit=limit, after=int(req.get("after", 0)))
        return {"ok": True, "total": self.quarantine.count(), "entries": entries}

    def _selection(self, req: dict[str, Any]) -> list[int] | None:
        if req.get("all"):
            return None
        ids = req.get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, int) for i in ids):
            raise ValueError("give 'ids' (a list of entry ids) or 'all': true")
        return list(ids)

    def _q_retry(self, req: dict[str, Any]) -> dict[str, Any]:
        """Move entries back to their queue (at its end); the server gets them again."""
        assert self.quarantine is not None
        try:
            ids = self._selection(req)
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        entries = self.quarantine.get(ids)
        moved = 0
        for start in range(0, len(entries), RETRY_CHUNK):
            part = entries[start : start + RETRY_CHUNK]
            for kind in KINDS:
                bodies = [body for _id, k, body in part if k == kind]
                if not bodies:
                    continue
                chunk = Chunk(body=b"\n".join(bodies), events=len(bodies), ts=time.time())
                self.stores[kind].put(chunk, force=True)
            # Only after the events are in their queue: a crash in between duplicates.
            self.quarantine.remove([i for i, _k, _b in part])
            moved += len(part)
        logger.info("{} quarantined event(s) moved back to the queue", moved)
        return {"ok": True, "retried": moved, "missing": (len(ids) - moved) if ids else 0}

    def _q_drop(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.quarantine is not None
        try:
            ids = self._selection(req)
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        if ids is None:
            ids = [i for i, _k, _b in self.quarantine.get(None)]
        dropped = 0
        for start in range(0, len(ids), RETRY_CHUNK):
            dropped += self.quarantine.remove(ids[start : start + RETRY_CHUNK])
        logger.info("{} quarantined event(s) dropped by the operator", dropped)
        return {"ok": True, "dropped": dropped, "missing": len(ids) - dropped}


def stateful_chunk_bytes(chunk_max_bytes: int, stateful_batch_max_bytes: int) -> int:
    """Size bound of a stateful chunk: one chunk must fit a request with the agent line
    (a bigger one would be cut into requests between its events, which costs more)."""
    room = max(stateful_batch_max_bytes // 2, stateful_batch_max_bytes - AGENT_LINE_RESERVE)
    return max(1, min(chunk_max_bytes, room))


def _malloc_trim() -> None:
    """Give freed heap memory back to the system (glibc only; a no-op elsewhere).

    Bursts (1 MB bodies, 256 KB chunks, msgpack frames) leave glibc's heap with free
    space it keeps; trimming it every upkeep keeps RSS near the working set.
    """
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


_libc: Any = None
