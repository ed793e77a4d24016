"""Bus endpoint addresses, derived from the run directory (or set one by one)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

#: service names that own a control socket
SERVICES = ("forwarder", "commander")


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoints:
    """The ZeroMQ addresses of every bus socket on this host."""

    events: str
    ingest: str
    commands: str
    results: str
    control_dir: str

    @classmethod
    def in_run_dir(cls, run_dir: str | Path, **overrides: str) -> Endpoints:
        """Default ipc endpoints in ``run_dir``; a non-empty override replaces one address."""
        base = Path(run_dir)
        values = {
            "events": f"ipc://{base / 'events.sock'}",
            "ingest": f"ipc://{base / 'ingest.sock'}",
            "commands": f"ipc://{base / 'commands.sock'}",
            "results": f"ipc://{base / 'results.sock'}",
            "control_dir": str(base),
        }
        values.update({k: v for k, v in overrides.items() if v})
        return cls(**values)

    def control(self, service: str) -> str:
        """The status control (REP) endpoint of one service: read-only commands, open to
        the agent's group (0660)."""
        return f"ipc://{Path(self.control_dir) / f'control-{service}.sock'}"

    def admin(self, service: str) -> str:
        """The admin control (REP) endpoint of one service: commands that change its
        state, for the agent's user and root only (0600, and the peer's uid is checked)."""
        return f"ipc://{Path(self.control_dir) / f'admin-{service}.sock'}"


def ipc_path(endpoint: str) -> Path | None:
    """The socket file of an ``ipc://`` endpoint, or None for other transports."""
    if endpoint.startswith("ipc://"):
        return Path(endpoint[len("ipc://") :])
    return None


def is_loopback_tcp(endpoint: str) -> bool:
    """True for ``tcp://`` endpoints bound to a loopback address only."""
    if not endpoint.startswith("tcp://"):
        return False
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: where the bus lives when nothing else is said (config key agent.run_dir)
DEFAULT_RUN_DIR = "/run/agentbus"


def default_run_dir() -> str:
    """The run dir an SDK client uses: ``$AGENTBUS_AGENT_RUN_DIR``, else the default."""
    return os.environ.get("AGENTBUS_AGENT_RUN_DIR") or DEFAULT_RUN_DIR
