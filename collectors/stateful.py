"""A collector that scans at an interval and reports only what changed (inventory, fim).

Each scan is compared with the stored state (:mod:`collectors.state`); the differences
go to the forwarder as stateful events in batches, and each batch is stored once the
forwarder committed it. A scan that fails or is interrupted reports nothing for the
part it did not finish — an incomplete scan must never look like "everything was deleted".

Two things keep the server's documents matching the host over time:

- **Reset on re-enrollment.** Document ids contain the agent uuid. The state remembers
  whose it is; when the uuid changes (``agentbus register --force``), it starts from empty,
  so the new agent creates all its documents instead of updating ones it never had.
- **Periodic full resync.** Every ``resync_interval`` each collector sends every document
  again, whole, as an ``update``: a server that lost an index heals (the forwarder turns
  the 404 of an update into a create). When it last happened is stored, so a restart does
  not bring it forward.

Besides the interval, the ``scan`` admin control command runs a scan now
(``{"ok": true, "scan": "started"}``); asked while one runs, one more follows it
(``"queued"``) — never a queue of them. It sets the event the loop waits on, so nothing
wakes without a reason.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loguru import logger

from bus.indices import index_for
from collectors import metrics as km
from collectors.base import CollectorService
from collectors.identity import agent_uuid, document_id
from collectors.isotime import iso_utc
from collectors.state import TIMESTAMP, Change, Item, StateStore, Stored
from core.config import Config

#: changes per acknowledged request; the state is saved after each
BATCH_CHANGES = 500
#: meta keys of the state file
META_AGENT = "agent_uuid"
META_SYNCED = "full_sync_at:"  # + collector: Unix time of the last full (re)send
#: the ``change`` label of collectors.metrics.DOCUMENTS per kind of change
_DONE = {"create": "created", "update": "updated", "delete": "deleted", "resend": "resent"}
#: the control command that runs a scan now (admin only: not in READ_ONLY_COMMANDS)
SCAN_COMMAND = "scan"


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one collector's scan reported."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    resent: int = 0  # unchanged documents sent again by a full resync
    complete: bool = True  # False when stopped before every change was committed

    @property
    def total(self) -> int:
        return self.created + self.updated + self.deleted + self.resent


class StatefulCollectorService(CollectorService):
    """Base of inventory and fim: ``scan()`` every ``interval`` (``--once``: one scan)."""

    #: the stateful module (docs/protocol.md, Events) this collector reports as
    module = "inventory"
    declared = km.STATEFUL_COLLECTOR

    def __init__(self, config: Config, args: argparse.Namespace | None = None) -> None:
        super().__init__(config)
        #: ``agentbus <name> --once``: one scan, then exit
        self.once = bool(getattr(args, "once", False))
        self.uuid = ""
        self.state: StateStore | None = None
        self.scans = 0
        #: wall clock of @timestamp and of the resync schedule (tests move it)
        self.clock: Callable[[], float] = time.time
        #: what the loop waits on between scans: a ``scan`` command or a stop sets it
        self._wake = threading.Event()
        self.stop_event.also_set(self._wake)
        self._scan_lock = threading.Lock()
        self._scanning = False

    @classmethod
    def from_args(cls, config: Config, args: argparse.Namespace) -> StatefulCollectorService:
        return cls(config, args)

    @property
    def interval(self) -> float:
        """Seconds between two scans: the collector's ``[collectors.<name>] interval``."""
        return float(self.config.collectors[self.name].interval)

    @property
    def resync_interval(self) -> float:
        """Seconds between two full resyncs: ``resync_interval`` of its section; 0: never."""
        section = self.config.collectors.get(self.name)
        return float(getattr(section, "resync_interval", 0.0))

    def startup(self) -> None:
        self.uuid = agent_uuid(self.config.data_dir)
        super().startup()
        self.state = StateStore(self.state_path())
        self.claim_state()

    def shutdown(self, deadline: float) -> None:
        if self.state is not None:
            self.state.close()
        super().shutdown(deadline)

    def main_loop(self) -> None:
        while not self.stop_event.is_set():
            with self._scan_lock:
                # A scan asked for from here on is one more, after this one.
                self._scanning = True
                self._wake.clear()
            started = time.monotonic()
            try:
                # Enrolled again while running? The documents of the old uuid are not ours.
                self.uuid = agent_uuid(self.config.data_dir)
                self.claim_state()
                self.scan()
                self.scans += 1
                self.metrics.inc(km.SCANS)
                self.metrics.set(km.LAST_SCAN_SECONDS, round(time.monotonic() - started, 3))
                self.metrics.set(km.LAST_SCAN_AT, time.time())
            except Exception as exc:  # a failed scan is retried at the next interval
                logger.exception("{} scan failed", self.name)
                self.metrics.error(f"scan failed: {exc}")
            finally:
                with self._scan_lock:
                    self._scanning = False
            if self.once:
                return
            # The next scan is due, or asked for (scan command), or we stop: nothing else
            # wakes this wait.
            self._wake.wait(self.interval)

    def control_handlers(self) -> dict[str, Any]:
        handlers = super().control_handlers()
        handlers[SCAN_COMMAND] = self._scan_now
        return handlers

    def _scan_now(self, _request: dict[str, Any]) -> dict[str, Any]:
        """The ``scan`` command: wake the loop for a scan now, or one right after this one."""
        if self.once:
            return {"ok": False, "error": f"{self.name} runs one scan (--once) and exits"}
        if self.stop_event.is_set():
            return {"ok": False, "error": f"{self.name} is stopping: no scan started"}
        with self._scan_lock:
            outcome = "queued" if self._scanning else "started"
            self._wake.set()
        self.metrics.inc(km.SCAN_REQUESTS, outcome=outcome)
        logger.info("{}: scan asked for on the admin socket: {}", self.name, outcome)
        return {"ok": True, "scan": outcome}

    def claim_state(self) -> None:
        """Make the state this agent's: start from empty when it was another uuid's."""
        assert self.state is not None
        owner = self.state.meta(META_AGENT)
        if owner is None:
            # A state file from before the uuid was remembered: its ids tell whose it is.
            sample = self.state.sample()
            if sample is not None and self.doc_id(sample[0]) != sample[1]:
                owner = "another agent"
        if owner is not None and owner != self.uuid:
            forgotten = self.state.count()
            self.state.reset()
            self.metrics.inc(km.STATE_RESETS)
            logger.warning(
                "{}: the agent uuid changed ({} -> {}): state reset, {} stored documents"
                " forgotten, everything is reported again",
                self.name,
                owner,
                self.uuid,
                forgotten,
            )
        if owner != self.uuid:
            self.state.set_meta(META_AGENT, self.uuid)

    def scan(self) -> None:
        """Scan everything and report the differences (subclasses)."""
        raise NotImplementedError

    def doc_id(self, key: str) -> str:
        return document_id(self.uuid, key)

    def _resync_due(self, collector: str, now: float) -> bool:
        assert self.state is not None
        if self.resync_interval <= 0:
            return False
        last = self.state.meta(META_SYNCED + collector)
        if last is None:
            # First scan (everything is a create anyway) or an older state: start the clock.
            self.state.set_meta(META_SYNCED + collector, repr(now))
            return False
        try:
            since = now - float(last)
        except ValueError:
            return True
        if since < 0:
            # The clock was set back: count from now rather than wait for the old future.
            self.state.set_meta(META_SYNCED + collector, repr(now))
            return False
        return since >= self.resync_interval

    def sync(
        self,
        collector: str,
        current: dict[str, Item],
        *,
        stable: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        previous: dict[str, Stored] | None = None,
    ) -> SyncResult:
        """Report the differences between the stored state of ``collector`` and ``current``."""
        assert self.state is not None
        now = self.clock()
        resync = self._resync_due(collector, now)
        index = index_for(self.module, collector)
        changes = self.state.diff(
            collector,
            current,
            self.doc_id,
            stable,
            previous,
            # @timestamp only where the index has it (fim's has not: strict would refuse it)
            timestamp=iso_utc(now) if index is None or TIMESTAMP in index.fields else None,
            nullable=None if index is None else index.fields.keys(),
            resync=resync,
        )
        counts = {"create": 0, "update": 0, "delete": 0, "resend": 0}
        for start in range(0, len(changes), BATCH_CHANGES):
            batch = changes[start : start + BATCH_CHANGES]
            if not self.send([self._event(ch) for ch in batch]):
                return SyncResult(
                    counts["create"],
                    counts["update"],
                    counts["delete"],
                    counts["resend"],
                    complete=False,
                )
            self.state.apply(batch)
            for ch in batch:
                counts["resend" if ch.resync else ch.operation] += 1
        for op, n in counts.items():
            if n:
                self.metrics.inc(km.DOCUMENTS, n, collector=collector, change=_DONE[op])
        if resync:
            self.state.set_meta(META_SYNCED + collector, repr(now))
            self.metrics.inc(km.RESYNCS)
            logger.info(
                "{} {}: full resync, {} unchanged documents sent again",
                self.name,
                collector,
                counts["resend"],
            )
        if changes:
            logger.info(
                "{} {}: {} created, {} updated, {} deleted",
                self.name,
                collector,
                counts["create"],
                counts["update"],
                counts["delete"],
            )
        return SyncResult(counts["create"], counts["update"], counts["delete"], counts["resend"])

    def _event(self, change: Change) -> dict[str, Any]:
        event: dict[str, Any] = {
            "module": self.module,
            "collector": change.collector,
            "type": "stateful",
            "id": change.doc_id,
            "operation": change.operation,
        }
        data = change.wire
        if data is not None:
            event["data"] = data
        return event
