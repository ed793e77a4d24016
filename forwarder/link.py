"""The senders' link to the server: one client, one token manager, the agent line.

Built lazily, on the first request: the forwarder starts, receives and persists events
even before the agent is enrolled (or while ``credentials.json`` cannot be read); its
senders back off with a clear "not enrolled" error until the credentials appear.
"""

from __future__ import annotations

import threading
from typing import Any

from comms.api import ServerClient, auth_status
from comms.credentials import load_credentials
from comms.metadata import AgentLine
from comms.tokens import TokenManager
from core.config import Config


class ServerLink:
    """Shared by every sender thread of the forwarder."""

    def __init__(self, config: Config, *, pool_size: int) -> None:
        self.config = config
        self.pool_size = pool_size
        self._lock = threading.Lock()
        self._client: ServerClient | None = None
        self._line = AgentLine(config.data_dir)

    def client(self) -> ServerClient:
        """The server client; raises NotEnrolled while there are no credentials."""
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                credentials = load_credentials(self.config.data_dir)
                tokens = TokenManager(self.config, credentials)
                self._client = ServerClient(self.config, tokens, pool_size=self.pool_size)
            return self._client

    def agent_line(self) -> bytes:
        """Line 1 of every body (re-read when the credentials file changes)."""
        return self._line.get()

    def token_expires_in(self) -> float | None:
        client = self._client
        return None if client is None else client.tokens.expires_in()

    def auth_status(self) -> dict[str, Any] | None:
        """The ``auth`` block of status, from the client as built so far: building it here
        would load the credentials before the first request does."""
        return auth_status(self._client, self.config.data_dir)
