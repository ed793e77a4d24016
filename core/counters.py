"""Counters: every service keeps its figures here and serves them on its control socket."""

from __future__ import annotations

import threading
import time
from typing import Any


class Counters:
    """A thread-safe bag of named numbers plus a few text facts (last error, and so on)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, Any] = {}
        self.started_at = time.time()

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + n

    def set(self, name: str, value: Any) -> None:
        with self._lock:
            self._values[name] = value

    def get(self, name: str, default: Any = 0) -> Any:
        with self._lock:
            return self._values.get(name, default)

    def error(self, message: str) -> None:
        """Remember the last error and when it happened (shown by ``agentbus status``)."""
        with self._lock:
            self._values["last_error"] = message
            self._values["last_error_at"] = time.time()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out = dict(self._values)
        out["started_at"] = self.started_at
        return out
