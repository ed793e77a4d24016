"""logcollector: follow log files and globs, one stateless event per line.

Run alone against a running forwarder: ``python -m collectors.logcollector --config F``.
"""

from collectors.logcollector.service import LogcollectorService

__all__ = ["LogcollectorService"]
