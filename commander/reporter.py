"""Hand results to the forwarder as stateful ``command`` events, in order, until accepted.

A result leaves commands.db only after the forwarder's acknowledged ingest answered that
it is on disk; from there the forwarder delivers it to the server (at least once). While
the forwarder is down or full, results wait in the outbox and the reporter backs off
(:meth:`bus.client.Ingest.send_until_committed`, which also gives up at once when the
commander stops).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from loguru import logger

from bus.client import Ingest
from bus.errors import BusError
from bus.threads import StopEvent, start_thread
from commander import metrics as cm
from commander.store import CommandStore, OutboxItem
from core.backoff import compute_backoff
from core.metrics import Registry

#: results sent to the forwarder in one ingest request
BATCH = 100
#: how long one ingest request may wait for the forwarder (seconds)
INGEST_TIMEOUT = 5.0
#: retry delays while the forwarder is down or full (seconds)
RETRY_INITIAL, RETRY_MAX = 0.2, 5.0


def retry_delay(failures: int) -> float:
    """The wait after ``failures`` failed hand-overs in a row: 0.2 s doubling to 5 s.

    No jitter: the one reporter of this host talks to its own forwarder — there is no
    fleet to spread out — and an exact, never-tiny delay keeps a full forwarder from being
    asked again in a tight loop.
    """
    return compute_backoff(failures, initial=RETRY_INITIAL, maximum=RETRY_MAX, jitter="none")


def result_event(item: OutboxItem) -> dict[str, Any]:
    """The stateful event (docs/protocol.md, "Commands") that carries one command result."""
    return {
        "module": "command",
        "type": "stateful",
        "id": item.document_id,
        "operation": "update",
        "data": {"command": {"result": {"code": item.code, "message": item.message}}},
    }


class Reporter:
    """Drains the outbox from its own thread (an absent forwarder never blocks the fan-out)."""

    def __init__(
        self,
        store: CommandStore,
        ingest_endpoint: str,
        metrics: Registry,
        stop_event: threading.Event,
        *,
        max_message_bytes: int,
        on_delivered: Callable[[list[OutboxItem]], None] = lambda items: None,
    ) -> None:
        self.store = store
        self.endpoint = ingest_endpoint
        self.metrics = metrics
        self.stop_event = stop_event
        self.max_message_bytes = max_message_bytes
        self.on_delivered = on_delivered
        self._wake = threading.Event()
        if isinstance(stop_event, StopEvent):
            stop_event.also_set(self._wake)  # a stop request ends the wait for results
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = start_thread(self._run, "reporter")

    def wake(self) -> None:
        """New results are in the outbox."""
        self._wake.set()

    def join(self, timeout: float) -> None:
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        ingest = Ingest(
            self.endpoint, timeout=INGEST_TIMEOUT, max_message_bytes=self.max_message_bytes
        )
        try:
            while not self.stop_event.is_set():
                self._wake.clear()
                try:
                    sent = self.send_once(ingest)
                except Exception as exc:  # refused, or a bug: keep the results, try again
                    self._failed(str(exc))
                    if not isinstance(exc, BusError):
                        logger.exception("commander: reporting results failed")
                    failures += 1
                    self.stop_event.wait(retry_delay(failures))
                    continue
                failures = 0
                if not sent and not self.stop_event.is_set():
                    # Nothing to hand over: sleep until wake() (new results) or a stop.
                    self._wake.wait()
        finally:
            ingest.close()

    def _failed(self, message: str) -> None:
        self.metrics.inc(cm.REPORT_ERRORS)
        self.metrics.error(f"cannot hand results to the forwarder: {message}")

    def _on_retry(self, reason: str, detail: str) -> None:
        # Forwarder down, silent or full: send_until_committed waits and tries again.
        if reason == "full":
            detail = "the forwarder did not take the results (full)"
        self._failed(detail)

    def send_once(self, ingest: Ingest) -> int:
        """Send the oldest waiting results; returns how many were accepted (0 = none waiting)."""
        items = self.store.outbox(BATCH)
        if not items:
            return 0
        reply = ingest.send_until_committed(
            [result_event(i) for i in items],
            self.stop_event,
            retry_delay=retry_delay,
            on_retry=self._on_retry,
        )
        if reply is None:
            return 0  # stopping: the results stay in the outbox for the next start
        if not reply.ok and not reply.rejected:
            raise BusError(f"the forwarder did not take the results ({reply.error})")
        rejected = {r.index for r in reply.rejected}
        for r in reply.rejected:
            # The forwarder committed the others; a result it refuses can never be sent.
            self.metrics.inc(cm.RESULTS_REJECTED)
            logger.error(
                "commander: the forwarder refused the result of {}: {} ({})",
                items[r.index].document_id if 0 <= r.index < len(items) else "?",
                r.message,
                r.reason,
            )
        if -1 in rejected:
            raise BusError("the forwarder refused the whole batch of results")
        self.store.delivered(items)
        self.metrics.inc(cm.RESULTS_REPORTED, len(items) - len(rejected))
        logger.debug("commander: {} result(s) handed to the forwarder", len(items))
        self.on_delivered(items)
        return len(items)
