"""The metrics of the sca collector, declared with every collector's in collectors.metrics."""

from __future__ import annotations

from collectors.metrics import CHECKS, POLICIES, POLICIES_SKIPPED, SCA

__all__ = ["CHECKS", "POLICIES", "POLICIES_SKIPPED", "SCA"]
