"""The agent metadata line that opens every events body (docs/protocol.md, "Events", line 1).

``agent_line(credentials, facts)`` renders it; :class:`AgentLine` keeps it current in a
long-running service: it re-reads the credentials when ``credentials.json`` changes (new
groups after a set-group command, written by the commander) and the host facts every few
minutes (addresses come and go), and otherwise hands out the cached bytes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from comms.credentials import Credentials, credentials_path, load_credentials
from comms.hostinfo import host_facts
from core.version import __version__

#: how often host facts (addresses) are read again
FACTS_REFRESH_SECONDS = 300.0
#: the agent type the server expects
AGENT_TYPE = "Endpoint"


def agent_line(credentials: Credentials, facts: dict[str, Any] | None = None) -> bytes:
    """Line 1 of an events body: compact JSON, keys sorted, no newline."""
    doc = {
        "agent": {
            "groups": list(credentials.groups),
            "host": facts if facts is not None else host_facts(),
            "id": credentials.uuid,
            "name": credentials.name,
            "type": AGENT_TYPE,
            "version": __version__,
        }
    }
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


class AgentLine:
    """The current metadata line of the agent whose credentials live in ``data_dir``."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        facts: Callable[[], dict[str, Any]] = host_facts,
        clock: Callable[[], float] = time.monotonic,
        refresh: float = FACTS_REFRESH_SECONDS,
    ) -> None:
        self._path = credentials_path(data_dir)
        self._data_dir = data_dir
        self._facts = facts
        self._clock = clock
        self._refresh = refresh
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._facts_at = float("-inf")
        self._facts_value: dict[str, Any] = {}
        self._credentials: Credentials | None = None
        self._line = b""

    def get(self) -> bytes:
        """The line, rebuilt when the credentials file or the host facts changed."""
        with self._lock:
            try:
                st = os.stat(self._path)
            except OSError:
                load_credentials(self._data_dir)  # raises NotEnrolled with a clear message
                raise
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            now = self._clock()
            changed = False
            if stamp != self._stamp or self._credentials is None:
                self._credentials = load_credentials(self._data_dir)
                self._stamp = stamp
                changed = True
            if now - self._facts_at >= self._refresh:
                facts = self._facts()
                self._facts_at = now
                if facts != self._facts_value:
                    self._facts_value = facts
                    changed = True
            if changed or not self._line:
                self._line = agent_line(self._credentials, self._facts_value)
            return self._line

    @property
    def credentials(self) -> Credentials:
        self.get()
        assert self._credentials is not None
        return self._credentials
