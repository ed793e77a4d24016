"""What every built-in collector shares: the acknowledged sender and the service shell.

A collector is an ordinary :class:`core.service.Service` (``startup`` → ``main_loop`` →
``shutdown``; SIGTERM sets ``stop_event``) that puts its events on the bus through the
acknowledged path (the ingest socket, through :meth:`bus.client.Ingest.send_until_committed`,
which watches the stop flag in every wait). :class:`AckSender` hides the retries: it returns
only once every event of a call is committed by the forwarder, or when the service is asked
to stop — so a collector saves its own state (offsets, baselines) only for what was
committed, and nothing is ever lost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from bus.client import Ingest
from bus.envelope import encode_events
from collectors import metrics as km
from core.backoff import compute_backoff
from core.config import Config
from core.logs import RateLimitedLog
from core.metrics import Registry
from core.service import Service

#: events per acknowledged request (bounded again by bytes below)
DEFAULT_BATCH_EVENTS = 5000
#: first wait after "full" or a timeout; doubles up to RETRY_MAX (equal jitter)
RETRY_INITIAL = 0.1
RETRY_MAX = 5.0
#: how long one acknowledged request may wait for the forwarder's answer
INGEST_TIMEOUT = 10.0


class AckSender:
    """Send events through the acknowledged path until the forwarder has committed them.

    ``send(events)`` splits the events into frames that fit the bus limit, and sends each
    with :meth:`bus.client.Ingest.send_until_committed`: it is tried again — after a
    growing, jittered wait — while the forwarder answers ``full``, does not answer, or is
    not there. It returns True once every event is committed (events the forwarder
    *rejected* as invalid are counted, logged and not retried: sending them again would not
    help), and False as soon as ``stop_event`` is set before that.

    The socket's every wait looks at ``stop_event`` in short slices (not one 10 s send
    timeout), so SIGTERM is never held up by an absent or hung forwarder.

    A timeout is the one case where a retry may repeat events: the forwarder may have
    committed a frame whose answer never arrived. "full" and rejections never repeat.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        stop_event: threading.Event,
        metrics: Registry | None = None,
        max_message_bytes: int = 4 * 1024 * 1024,
        batch_events: int = DEFAULT_BATCH_EVENTS,
        timeout: float = INGEST_TIMEOUT,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.stop_event = stop_event
        self.metrics = metrics if metrics is not None else Registry(km.COLLECTOR)
        # Keep frames well below the limit; a batch encoded bigger than this is halved.
        self.max_frame_bytes = max(64 * 1024, max_message_bytes // 2)
        self.batch_events = batch_events
        self.timeout = timeout
        self._ingest = Ingest(endpoint, timeout=timeout, max_message_bytes=max_message_bytes)
        self._log = RateLimitedLog(6)
        self._on_wait = on_wait

    def close(self) -> None:
        self._ingest.close()

    def send(self, events: Sequence[dict[str, Any]]) -> bool:
        """Commit ``events`` (in order); False if asked to stop before all were committed."""
        return self.send_count(events) == len(events)

    def send_count(self, events: Sequence[dict[str, Any]]) -> int:
        """Commit ``events`` in order; returns how many, from the first, are committed.

        That is ``len(events)`` unless ``stop_event`` was set first; a caller that saves
        state per event (offsets) saves it up to that count.
        """
        done = 0
        for frame_events, frame in self._frames(events):
            if not self._send_frame(frame_events, frame):
                return done
            done += len(frame_events)
        return done

    def _frames(self, events: Sequence[dict[str, Any]]) -> list[tuple[list[dict[str, Any]], bytes]]:
        """Batches of at most ``batch_events``, each encoded once; halved while too big."""
        out: list[tuple[list[dict[str, Any]], bytes]] = []
        for start in range(0, len(events), self.batch_events):
            self._fit(list(events[start : start + self.batch_events]), out)
        return out

    def _fit(
        self, batch: list[dict[str, Any]], out: list[tuple[list[dict[str, Any]], bytes]]
    ) -> None:
        frame = encode_events(batch)
        if len(frame) <= self.max_frame_bytes or len(batch) == 1:
            out.append((batch, frame))
            return
        half = len(batch) // 2
        self._fit(batch[:half], out)
        self._fit(batch[half:], out)

    def _retry_delay(self, failures: int) -> float:
        # Equal jitter, deliberately (not full): it keeps several collectors on the host
        # from retrying in lock-step, and the wait is never near zero — a full forwarder
        # is asked again after at least half the ceiling, not at once in a tight loop.
        return compute_backoff(failures, initial=RETRY_INITIAL, maximum=RETRY_MAX, jitter="equal")

    def _on_retry(self, reason: str, detail: str) -> None:
        if reason == "timeout":
            self.metrics.inc(km.SEND_TIMEOUTS)
            self._log.warning("timeout", "forwarder did not commit: {}; retrying", detail)
        elif reason == "full":
            self.metrics.inc(km.FORWARDER_FULL)
        else:
            self.metrics.inc(km.SEND_ERRORS)
            self._log.warning("bus", "bus error: {}; retrying", detail)
        if self._on_wait is not None:
            self._on_wait(reason)

    def _send_frame(self, events: list[dict[str, Any]], frame: bytes | None = None) -> bool:
        if frame is None:
            frame = encode_events(events)
        result = self._ingest.send_until_committed(
            events,
            self.stop_event,
            retry_delay=self._retry_delay,
            on_retry=self._on_retry,
            frame=frame,
        )
        if result is None:
            return False
        if result.ok:
            self.metrics.inc(km.EVENTS_SENT, result.accepted)
        elif result.error == "rejected":
            # The valid events ARE committed; the others would fail again.
            self.metrics.inc(km.EVENTS_SENT, result.accepted)
            self.metrics.inc(km.EVENTS_REJECTED, len(result.rejected))
            for rej in result.rejected[:3]:
                self._log.warning(
                    "rejected", "forwarder rejected an event: {}: {}", rej.reason, rej.message
                )
        elif len(events) > 1 and result.error == "too_large":
            # Our size estimate was wrong for this batch: halve it.
            half = len(events) // 2
            return self._send_frame(events[:half]) and self._send_frame(events[half:])
        else:
            self.metrics.inc(km.EVENTS_REJECTED, len(events))
            self._log.warning(
                "frame", "forwarder refused a frame of {} events: {}", len(events), result.error
            )
        return True


class CollectorService(Service):
    """A built-in collector process: an :class:`AckSender` plus the service lifecycle."""

    name = "collector"
    declared = km.COLLECTOR
    #: seconds to wait for the forwarder's answer before sending again
    ingest_timeout = INGEST_TIMEOUT
    # A burst builds hundreds of thousands of short-lived, acyclic event dicts: with the
    # default thresholds the cyclic GC runs thousands of times per second over all of them
    # (a third of the logcollector's time). Reference counting frees them anyway.
    gc_threshold = (100_000, 50, 100)

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.sender: AckSender | None = None

    def startup(self) -> None:
        self.sender = AckSender(
            self.endpoints.ingest,
            stop_event=self.stop_event,
            metrics=self.metrics,
            max_message_bytes=self.config.bus.max_message_bytes,
            timeout=self.ingest_timeout,
        )

    def shutdown(self, deadline: float) -> None:
        if self.sender is not None:
            self.sender.close()

    def send(self, events: Sequence[dict[str, Any]]) -> bool:
        """Commit ``events`` through the forwarder; False when stopping first."""
        assert self.sender is not None, "startup() opens the sender"
        return self.sender.send(events)

    def state_path(self) -> Any:
        """``data_dir/collectors/<name>.db`` (the directory is created, mode 0700)."""
        path = self.config.data_dir / "collectors"
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path / f"{self.name}.db"
