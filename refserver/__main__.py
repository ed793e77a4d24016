"""``python -m refserver [...]``: run the reference server (or drive a running one) without
the agent installed around it; the same arguments as ``agentbus server``."""

from __future__ import annotations

import sys

from refserver.cli import main

if __name__ == "__main__":
    sys.exit(main())
