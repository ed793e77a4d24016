"""Who this agent is, and the stateful document ids built from it.

Stateful documents are named ``sha1hex(agent_uuid + ":" + primary_key)`` (docs/protocol.md,
Events), so the same package or file always maps to the same document on the server.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bus.errors import AgentbusError
from comms.errors import NotEnrolled


def agent_uuid(data_dir: str | Path) -> str:
    """The enrolled agent's uuid (from ``comms.credentials``; raises when not enrolled)."""
    try:
        from comms.credentials import load_credentials
    except ImportError:  # comms not installed in this build: read the file ourselves
        return _uuid_from_file(Path(data_dir))
    try:
        return str(load_credentials(data_dir).uuid)  # type: ignore[arg-type]
    except AgentbusError as exc:
        raise NotEnrolled(str(exc)) from None


def _uuid_from_file(data_dir: Path) -> str:
    path = data_dir / "credentials.json"
    try:
        uuid = json.loads(path.read_text(encoding="utf-8"))["uuid"]
    except (OSError, ValueError, KeyError, TypeError):
        raise NotEnrolled(
            f"no agent credentials in {path}: run 'agentbus register' first"
        ) from None
    if not isinstance(uuid, str) or not uuid:
        raise NotEnrolled(f"{path} holds no agent uuid: run 'agentbus register' again")
    return uuid


def document_id(uuid: str, primary_key: str) -> str:
    """``sha1hex(agent_uuid + ":" + primary_key)``, the id rule of docs/protocol.md."""
    return hashlib.sha1(f"{uuid}:{primary_key}".encode()).hexdigest()
