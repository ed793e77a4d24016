"""The reference server's settings, parsed once by the CLI and read by every part."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: default port of everything (comms API, management API, admin API)
DEFAULT_PORT = 27000
#: default admin user of the management API (the real server's default too)
DEFAULT_USER = "wazuh"
#: refused on a non-loopback bind (refserver.credentials)
DEFAULT_PASSWORD = "wazuh"
#: failed credential checks per minute and client address before 429 (refserver.throttle)
DEFAULT_FAILURES_PER_MINUTE = 10
#: how long GET /api/v1/commands holds a request with nothing to deliver (seconds)
DEFAULT_COMMAND_HOLD = 20 * 60.0


@dataclass(frozen=True, kw_only=True)
class ServerOptions:
    """Everything ``agentbus server`` can be told."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    #: serve the management API on this port too (besides the main port); None: main only
    management_port: int | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    self_signed: bool = False
    user: str = DEFAULT_USER
    password: str = DEFAULT_PASSWORD
    #: where the password came from, for the start-up line (the password is never printed)
    password_source: str = "the built-in default"
    command_hold: float = DEFAULT_COMMAND_HOLD
    #: seconds added to the host clock for JWT iat/exp (negative: behind)
    clock_skew: float = 0.0
    #: allow the admin API from any client (default: loopback only)
    admin_any_host: bool = False
    #: the admin API's bearer token (refserver.admintoken, set once listening); empty: every
    #: admin call is 401
    admin_token: str = ""
    #: where that token is kept, printed at start instead of the token (None: in data_dir)
    admin_token_file: Path | None = None
    #: failed logins, agent key checks and admin token checks per minute and client address
    #: before 429 (0: no limit)
    failures_per_minute: int = DEFAULT_FAILURES_PER_MINUTE
    #: PBKDF2 rounds for new agent keys (lower only for tests and benchmarks)
    key_hash_rounds: int = 100_000
    # -- relaxations of the real server's rules, for experiments (all off: as strict as 6.0.0)
    #: enrollment also accepts UUID v7 ids (the real validator takes v4 only)
    allow_uuid7: bool = False
    #: check stateful documents against their index's mapping (the real indices are strict)
    strict_documents: bool = True
    #: stateful create/update as create-or-replace (the real indexer: 409 / 404 / merge)
    upsert_documents: bool = False
    #: parse stateful bodies per N-byte piece of the request, as the 6.0.0 comms API parses
    #: each receive chunk (None: one correct streaming parse)
    stateful_chunk: int | None = None

    @property
    def tls(self) -> bool:
        return self.self_signed or self.tls_cert is not None

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"
