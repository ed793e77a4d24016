"""``[collectors.inventory]``: the inventory collector's configuration section.

Declared here, next to the collector; :mod:`core.config` finds it through the service
registry (:mod:`core.registry`) and checks it like every other section.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.config import Seconds


@dataclass(frozen=True, kw_only=True)
class InventorySettings:
    enabled: bool = True
    #: time between scans
    interval: Seconds = 3600.0
    #: which inventories to collect
    collectors: list[str] = field(
        default_factory=lambda: ["system", "hardware", "packages", "processes", "networks", "ports"]
    )
    #: dpkg's status file (packages); when absent, rpm is asked if it is installed
    dpkg_status: str = "/var/lib/dpkg/status"
    #: every document is sent again (as an update) this often, so a server that lost an
    #: index heals; 0 = never
    resync_interval: Seconds = 86400.0
