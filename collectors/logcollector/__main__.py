"""``python -m collectors.logcollector --config F``: tail the configured files until SIGTERM."""

from __future__ import annotations

import sys

from collectors.base import collector_main
from collectors.logcollector.service import LogcollectorService


def main() -> int:
    return collector_main(
        LogcollectorService,
        description="Follow [collectors.logcollector] paths; one event per line to the forwarder.",
    )


if __name__ == "__main__":
    sys.exit(main())
