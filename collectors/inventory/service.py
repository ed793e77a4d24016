"""The inventory service: scan the host at an interval, report what changed.

Module ``inventory``; one collector per kind of inventory (``system``, ``hardware``,
``packages``, ``processes``, ``networks``, ``ports``), each an index of its own
(``wazuh-states-inventory-<collector>``, :mod:`bus.indices`). Document ids follow
docs/protocol.md: ``sha1hex(agent_uuid + ":" + primary key)``.
"""

from __future__ import annotations

import argparse

from loguru import logger

from collectors import metrics as km
from collectors.inventory.scanners import STABLE, Scanner, scanners
from collectors.inventory.settings import InventorySettings
from collectors.stateful import StatefulCollectorService
from core.config import Config


class InventoryService(StatefulCollectorService):
    """Scans ``[collectors.inventory] collectors`` every ``interval``."""

    name = "inventory"
    declared = km.INVENTORY
    module = "inventory"

    def __init__(self, config: Config, args: argparse.Namespace | None = None) -> None:
        super().__init__(config, args)
        self.settings: InventorySettings = config.collectors.inventory
        available = scanners(self.settings.dpkg_status)
        self.scanners: dict[str, Scanner] = {}
        for name in self.settings.collectors:
            if name in available:
                self.scanners[name] = available[name]
            else:
                logger.warning("inventory collector {!r} is not available on this host", name)

    def scan(self) -> None:
        for name, scanner in self.scanners.items():
            if self.stop_event.is_set():
                return
            try:
                current = scanner()
            except Exception as exc:
                # Skip this collector this time; its documents stay as they were.
                self.metrics.inc(km.SCAN_ERRORS)
                self.metrics.error(f"{name}: {exc}")
                logger.warning("inventory {} scan failed: {}", name, exc)
                continue
            self.sync(name, current, stable=STABLE.get(name))
