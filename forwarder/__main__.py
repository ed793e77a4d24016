"""``python -m forwarder --config FILE``: the forwarder service alone (like ``agentbus forwarder``)."""

from __future__ import annotations

import sys

from agent.main import main

if __name__ == "__main__":
    sys.exit(main(["forwarder", *sys.argv[1:]]))
