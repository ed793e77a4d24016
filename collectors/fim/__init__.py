"""fim: file integrity monitoring by periodic scan (sha256 + attributes), stateful differences.

Run alone against a running forwarder: ``agentbus fim --config F [--once]``. Its configuration
section is declared in ``settings.py``; this package imports nothing at import time, so
reading the configuration does not load the collector.
"""

from typing import Any

__all__ = ["FimService"]


def __getattr__(name: str) -> Any:
    if name == "FimService":
        from collectors.fim.service import FimService

        return FimService
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
