"""What the host has: the inventory collectors by name, each a scanner → {primary key: Item}.

One module per collector (:mod:`.system`, :mod:`.hardware`, :mod:`.packages`,
:mod:`.processes`, :mod:`.networks`, :mod:`.ports`), sharing the readers of :mod:`.host`.
Every document holds only fields of its index's mapping (:mod:`bus.indices`; the indices are
strict), with their types; a value the host does not offer is left out rather than sent
empty. A scanner that cannot read its source raises; the caller then skips that collector for
this scan (it must not be mistaken for "everything disappeared").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from collectors.inventory.hardware import scan_hardware, stable_hardware
from collectors.inventory.networks import scan_networks, stable_networks
from collectors.inventory.packages import make_package_scanner
from collectors.inventory.ports import scan_ports, stable_ports
from collectors.inventory.processes import scan_processes
from collectors.inventory.system import scan_system, stable_system
from collectors.state import Item

Scanner = Callable[[], dict[str, Item]]


def scanners(dpkg_status: str) -> dict[str, Scanner]:
    """Every collector this host can run, by name."""
    return {
        "system": scan_system,
        "hardware": scan_hardware,
        "packages": make_package_scanner(dpkg_status),
        "processes": scan_processes,
        "networks": scan_networks,
        "ports": scan_ports,
    }


#: collectors whose comparison leaves volatile fields out
STABLE: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "system": stable_system,
    "hardware": stable_hardware,
    "networks": stable_networks,
    "ports": stable_ports,
}
