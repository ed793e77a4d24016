"""The agent's identity, written once by ``agentbus register``: ``<data_dir>/credentials.json``.

The file holds the agent's UUID, its key (the secret it authenticates with), name, groups
and the comms URL it enrolled for; it is written atomically with mode 0600 and never
logged. ``Credentials.__repr__`` hides the key so a stray ``%r`` cannot leak it.

Which comms URL the services use: ``agent.server_url`` from the config when it is set to
something other than the packaged default, else the URL stored here at enrollment. So
``agentbus register --connect-url ...`` is enough on a host that keeps the default config,
and an operator can still point an enrolled agent elsewhere from the config file.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comms.errors import NotEnrolled
from comms.private_files import write_private
from comms.server_url import check_server_url
from core.config import AgentSection, Config

#: file name inside the data dir
CREDENTIALS_FILE = "credentials.json"
#: format version of the file, bumped on incompatible changes
FORMAT = 1


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """What the agent needs to authenticate and describe itself."""

    uuid: str
    key: str = field(repr=False)
    name: str
    groups: tuple[str, ...] = ()
    #: comms API base URL chosen at enrollment (``--connect-url``)
    server_url: str
    #: management API the agent enrolled with (informational)
    enroll_url: str = ""
    #: TLS mode used at enrollment (informational; services use agent.verification_mode)
    verification_mode: str = "full"
    #: ISO 8601 UTC time of enrollment
    enrolled_at: str = ""

    def to_json(self) -> bytes:
        raw: dict[str, Any] = dataclasses.asdict(self)
        raw["groups"] = list(self.groups)
        raw["format"] = FORMAT
        return json.dumps(raw, indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, text: bytes | str) -> Credentials:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        for name in ("uuid", "key", "name", "server_url"):
            if not isinstance(raw.get(name), str) or not raw[name]:
                raise ValueError(f"field {name!r} is missing or not a string")
        groups = raw.get("groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise ValueError("field 'groups' must be a list of strings")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        values["groups"] = tuple(groups)
        return cls(**values)

    def with_groups(self, groups: list[str] | tuple[str, ...]) -> Credentials:
        return dataclasses.replace(self, groups=tuple(groups))


def credentials_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / CREDENTIALS_FILE


def load_credentials(data_dir: str | Path) -> Credentials:
    """The stored credentials; :class:`NotEnrolled` when missing or unreadable."""
    path = credentials_path(data_dir)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise NotEnrolled(
            f"this agent is not enrolled (no {path}); run 'agentbus register' first"
        ) from None
    except OSError as exc:
        raise NotEnrolled(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return Credentials.from_json(text)
    except (ValueError, TypeError) as exc:
        raise NotEnrolled(
            f"{path} is damaged ({exc}); enroll again with 'agentbus register --force'"
        ) from None


def save_credentials(data_dir: str | Path, credentials: Credentials) -> None:
    """Write the credentials atomically, mode 0600 (data dir created 0700 if missing)."""
    write_private(credentials_path(data_dir), credentials.to_json())


def update_groups(data_dir: str | Path, groups: list[str] | tuple[str, ...]) -> Credentials:
    """Store new groups (after a set-group command); returns the new credentials."""
    updated = load_credentials(data_dir).with_groups(groups)
    save_credentials(data_dir, updated)
    return updated


def comms_url(config: Config, credentials: Credentials) -> str:
    """The comms API base URL to use: the config's when set, else the enrolled one.

    Every service client gets its URL here, so the transport check is made here, once:
    :class:`~comms.errors.InsecureServerURL` for plain http to a non-loopback host
    (:func:`comms.server_url.check_server_url`).
    """
    configured = config.agent.server_url.strip()
    if configured and configured != AgentSection().server_url:
        return check_server_url(configured.rstrip("/"), config, what="[agent] server_url")
    return check_server_url(
        credentials.server_url.rstrip("/"), config, what="the enrolled server URL"
    )
