"""inventory: what the host is and runs, reported as stateful differences.

Run alone against a running forwarder: ``python -m collectors.inventory --config F [--once]``.
"""

from collectors.inventory.service import InventoryService

__all__ = ["InventoryService"]
