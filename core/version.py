"""The agent's version, as installed (``agentbus/<version>`` on the wire, ``--version``)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agentbus")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
