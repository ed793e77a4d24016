"""logcollector: follow log files and globs, one stateless event per line.

Run alone against a running forwarder: ``agentbus logcollector --config F``. Its configuration
section is declared in ``settings.py``; this package imports nothing at import time, so
reading the configuration does not load the collector.
"""

from typing import Any

__all__ = ["LogcollectorService"]


def __getattr__(name: str) -> Any:
    if name == "LogcollectorService":
        from collectors.logcollector.service import LogcollectorService

        return LogcollectorService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
