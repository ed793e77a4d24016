"""fim: file integrity monitoring by periodic scan (sha256 + attributes), stateful differences.

Run alone against a running forwarder: ``python -m collectors.fim --config F [--once]``.
"""

from collectors.fim.service import FimService

__all__ = ["FimService"]
