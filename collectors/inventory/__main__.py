"""``python -m collectors.inventory --config F [--once]``: scan at the interval until SIGTERM."""

from __future__ import annotations

import sys

from collectors.base import collector_main
from collectors.inventory.service import InventoryService
from collectors.stateful import add_once_argument


def main() -> int:
    return collector_main(
        InventoryService,
        description="Scan the host's inventory and send the differences to the forwarder.",
        add_arguments=add_once_argument,
    )


if __name__ == "__main__":
    sys.exit(main())
