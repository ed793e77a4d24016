"""Who this agent is, and the stateful document ids built from it.

Stateful documents are named ``sha1hex(agent_uuid + ":" + primary_key)`` (docs/protocol.md,
Events), so the same package or file always maps to the same document on the server.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from bus.errors import AgentbusError
from comms.credentials import load_credentials
from comms.errors import NotEnrolled


def agent_uuid(data_dir: str | Path) -> str:
    """The enrolled agent's uuid (from ``comms.credentials``; raises when not enrolled)."""
    try:
        return str(load_credentials(data_dir).uuid)  # type: ignore[arg-type]
    except AgentbusError as exc:
        raise NotEnrolled(str(exc)) from None


def document_id(uuid: str, primary_key: str) -> str:
    """``sha1hex(agent_uuid + ":" + primary_key)``, the id rule of docs/protocol.md."""
    return hashlib.sha1(f"{uuid}:{primary_key}".encode()).hexdigest()
