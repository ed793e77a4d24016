"""inventory: what the host is and runs, reported as stateful differences.

Run alone against a running forwarder: ``agentbus inventory --config F [--once]``. Its configuration
section is declared in ``settings.py``; this package imports nothing at import time, so
reading the configuration does not load the collector.
"""

from typing import Any

__all__ = ["InventoryService"]


def __getattr__(name: str) -> Any:
    if name == "InventoryService":
        from collectors.inventory.service import InventoryService

        return InventoryService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
