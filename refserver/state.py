"""What every route shares: options, store, token issuer, long-poll waiters, counters."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from dataclasses import dataclass, field

from refserver.options import ServerOptions
from refserver.store import Store
from refserver.throttle import FailureThrottle
from refserver.tokens import Clock, TokenIssuer
from refserver.waiters import CommandWaiters


@dataclass
class Stats:
    """Counters the admin API reports (in memory: they restart at zero with the server)."""

    #: successful POST /api/v1/authentication
    auth_count: int = 0
    #: (method, path, status) → requests; status 0 means the connection was dropped
    requests: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    #: stateless data lines the engine's reading took for headers: events lost silently
    stateless_swallowed: int = 0
    #: stateful items refused because their document does not fit the index's mapping
    documents_refused: int = 0
    #: failed credential checks by kind (login, agent key, admin)
    auth_failures: Counter[str] = field(default_factory=Counter)
    #: requests answered 429 by the failure throttle, by kind
    throttled: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        self.auth_count = self.stateless_swallowed = self.documents_refused = 0
        self.requests.clear()
        self.auth_failures.clear()
        self.throttled.clear()


class ServerState:
    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        # 0700: agents' key hashes, the signing key and the admin token live here
        options.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        options.files_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(options.data_dir / "server.db")
        self.clock = Clock(options.clock_skew)
        self.tokens = TokenIssuer(options.data_dir / "keys", self.clock)
        self.waiters = CommandWaiters()
        self.stats = Stats()
        self.command_hold = options.command_hold
        self.throttle = FailureThrottle(options.failures_per_minute)
        # uuid → sha256 of a key already checked against its PBKDF2 hash: PBKDF2 is slow on
        # purpose, and agents re-authenticate every few minutes.
        self._verified_keys: dict[str, bytes] = {}

    def key_known_good(self, uuid: str, key: str) -> bool:
        digest = self._verified_keys.get(uuid)
        return digest is not None and hmac.compare_digest(digest, _sha256(key))

    def remember_key(self, uuid: str, key: str) -> None:
        self._verified_keys[uuid] = _sha256(key)

    def close(self) -> None:
        self.store.close()


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()
