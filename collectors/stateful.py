"""A collector that scans at an interval and reports only what changed (inventory, fim).

Each scan is compared with the stored state (:mod:`collectors.state`); the differences
go to the forwarder as stateful events in batches, and each batch is stored once the
forwarder committed it. A scan that fails or is interrupted reports nothing for the
part it did not finish — an incomplete scan must never look like "everything was deleted".
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loguru import logger

from agent.config import Config
from collectors.base import CollectorService
from collectors.identity import agent_uuid, document_id
from collectors.state import Change, Item, StateStore, Stored

#: changes per acknowledged request; the state is saved after each
BATCH_CHANGES = 500


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one collector's scan reported."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    complete: bool = True  # False when stopped before every change was committed

    @property
    def total(self) -> int:
        return self.created + self.updated + self.deleted


class StatefulCollectorService(CollectorService):
    """Base of inventory and fim: ``scan()`` every ``interval`` (``--once``: one scan)."""

    #: the stateful module of PROTOCOL.md this collector reports as
    module = "inventory"

    def __init__(self, config: Config, args: argparse.Namespace | None = None) -> None:
        super().__init__(config)
        self.once = bool(getattr(args, "once", False))
        self.uuid = ""
        self.state: StateStore | None = None
        self.scans = 0

    @property
    def interval(self) -> float:
        raise NotImplementedError

    def startup(self) -> None:
        self.uuid = agent_uuid(self.config.data_dir)
        super().startup()
        self.state = StateStore(self.state_path())

    def shutdown(self, deadline: float) -> None:
        if self.state is not None:
            self.state.close()
        super().shutdown(deadline)

    def main_loop(self) -> None:
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                self.scan()
                self.scans += 1
                self.counters.inc("scans")
                self.counters.set("last_scan_seconds", round(time.monotonic() - started, 3))
                self.counters.set("last_scan_at", time.time())
            except Exception as exc:  # a failed scan is retried at the next interval
                logger.exception("{} scan failed", self.name)
                self.counters.error(f"scan failed: {exc}")
            if self.once:
                return
            self.stop_event.wait(self.interval)

    def scan(self) -> None:
        """Scan everything and report the differences (subclasses)."""
        raise NotImplementedError

    def doc_id(self, key: str) -> str:
        return document_id(self.uuid, key)

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
        changes = self.state.diff(collector, current, self.doc_id, stable, previous)
        counts = {"create": 0, "update": 0, "delete": 0}
        for start in range(0, len(changes), BATCH_CHANGES):
            batch = changes[start : start + BATCH_CHANGES]
            if not self.send([self._event(ch) for ch in batch]):
                return SyncResult(
                    counts["create"], counts["update"], counts["delete"], complete=False
                )
            self.state.apply(batch)
            for ch in batch:
                counts[ch.operation] += 1
        for op, n in counts.items():
            if n:
                self.counters.inc(f"{collector}_{op}d", n)
        if changes:
            logger.info(
                "{} {}: {} created, {} updated, {} deleted",
                self.name,
                collector,
                counts["create"],
                counts["update"],
                counts["delete"],
            )
        return SyncResult(counts["create"], counts["update"], counts["delete"])

    def _event(self, change: Change) -> dict[str, Any]:
        event: dict[str, Any] = {
            "module": self.module,
            "collector": change.collector,
            "type": "stateful",
            "id": change.doc_id,
            "operation": change.operation,
        }
        if change.data is not None:
            event["data"] = change.data
        return event


def add_once_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--once", action="store_true", help="scan once, report the differences and exit"
    )
