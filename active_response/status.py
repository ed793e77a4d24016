"""The executor's status file: its counters and the responses in force, for ``agentbus ar
list`` (and anyone who may read the state directory: root, or the executor's user).

The executor is not a service of ``agentbus run`` and has no control socket: it rewrites
``<state_dir>/status.json`` (atomically, mode 0600) whenever something changes, and at
least every :data:`REFRESH` seconds so that a reader can tell a stale file (``updated``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATUS_NAME = "status.json"
#: seconds between two writes of an idle executor
REFRESH = 30.0


def write_status(state_dir: str | Path, report: dict[str, Any]) -> None:
    path = Path(state_dir) / STATUS_NAME
    tmp = path.with_name(f".{STATUS_NAME}.{os.getpid()}")
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(report, f, sort_keys=True, default=str)
    os.replace(tmp, path)


def read_status(state_dir: str | Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(state_dir) / STATUS_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
