"""``python -m collectors.fim --config F [--once]``: scan at the interval until SIGTERM."""

from __future__ import annotations

import sys

from collectors.base import collector_main
from collectors.fim.service import FimService
from collectors.stateful import add_once_argument


def main() -> int:
    return collector_main(
        FimService,
        description="Watch [collectors.fim] paths; send created, modified and deleted files.",
        add_arguments=add_once_argument,
    )


if __name__ == "__main__":
    sys.exit(main())
