"""The logcollector's metrics, declared with every collector's in :mod:`collectors.metrics`
(file, journal and command sources): :data:`LOGCOLLECTOR` is the whole set."""

from __future__ import annotations

from collectors.metrics import (
    COMMAND_EVENTS,
    COMMAND_RUNS,
    JOURNAL_ENTRIES,
    JOURNAL_ERRORS,
    LOGCOLLECTOR,
)

__all__ = ["COMMAND_EVENTS", "COMMAND_RUNS", "JOURNAL_ENTRIES", "JOURNAL_ERRORS", "LOGCOLLECTOR"]
