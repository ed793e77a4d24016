"""Dates as the state indices store them: ISO 8601 UTC with milliseconds (``…T10:00:00.000Z``)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(seconds: float) -> str:
    """``2026-12-02T10:00:00.000Z`` for a Unix time in seconds."""
    dt = datetime.fromtimestamp(seconds, UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_utc_ns(ns: int) -> str:
    """The same for a time in nanoseconds (``st_mtime_ns``), cut to milliseconds."""
    return iso_utc(ns // 1_000_000 / 1000)
