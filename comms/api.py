"""The comms API calls the services make: events, commands, files (docs/protocol.md).

Every call carries the token from the :class:`~comms.tokens.TokenManager`; a 401/403
answer renews the token and the call is sent once more. What happens next is up to the
caller, with these rules:

- ``post_events`` returns every status (the forwarder decides: ack, split, bisect, retry);
  it raises :class:`ServerUnreachable` (connection, timeout, TLS), :class:`BadResponse`
  (a redirect, an answer over its cap or compressed) and what the token manager raises.
- ``get_commands`` returns ``[]`` on 408 (the long-poll ended empty) and raises
  :class:`ServerUnreachable` on 429/5xx and :class:`BadResponse` on anything unusable.
- ``get_file`` returns ``None`` on 404, likewise otherwise.

Every answer is read under the byte cap of its endpoint (:mod:`comms.http`): commands
``[commander] max_poll_bytes``, files ``[agent] max_download_bytes``, events answers and
every error ``[agent] max_response_bytes``; over it, :class:`~comms.errors.TooLarge` (a
:class:`BadResponse`).

:func:`auth_status` gives the services the ``auth`` block of ``agentbus status``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import requests

from bus.errors import AgentbusError
from comms.credentials import comms_url, load_credentials
from comms.errors import BadResponse, ServerUnreachable, error_of
from comms.http import (
    DEFAULT_POOL_SIZE,
    Cap,
    abort_calls,
    answer_cap,
    download_cap,
    make_session,
    poll_cap,
    retry_after,
    send,
)
from comms.tokens import TokenManager
from core.config import Config

API_PREFIX = "/api/v1"


@dataclass(frozen=True)
class Reply:
    """A server answer: status, raw body, headers (case-insensitive mapping)."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON; :class:`BadResponse` when it is not."""
        try:
            return json.loads(self.body)
        except ValueError:
            raise BadResponse(
                f"HTTP {self.status} answer is not JSON", status=self.status
            ) from None

    def message(self) -> str:
        """The server's message of an error body (either shape), else a short excerpt."""
        return error_of(self.body, self.status)[0]

    def retry_after(self) -> float | None:
        """The ``Retry-After`` the server asked for, in seconds."""
        return retry_after(self.headers)


class ServerClient:
    """The comms API for one service; thread-safe (one request per thread at a time)."""

    def __init__(
        self,
        config: Config,
        tokens: TokenManager,
        session: requests.Session | None = None,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        self.config = config
        self.tokens = tokens
        self.session = session if session is not None else make_session(config, pool_size)
        self.base_url = comms_url(config, tokens.credentials) + API_PREFIX

    def post_events(
        self, kind: Literal["stateless", "stateful"], body: bytes, timeout: float | None = None
    ) -> Reply:
        """POST one NDJSON body; returns whatever status the server gave (after one renewal)."""
        if kind not in ("stateless", "stateful"):
            raise ValueError(f"kind must be 'stateless' or 'stateful', not {kind!r}")
        read = self.config.forwarder.request_timeout if timeout is None else timeout
        return self._call(
            "POST",
            f"/events/{kind}",
            read,
            answer_cap(self.config),
            f"{kind} events",
            data=body,
            headers={"Content-Type": "application/json"},
        )

    def get_commands(self, timeout: float) -> list[dict[str, Any]]:
        """Long-poll for commands: the list the server sent, ``[]`` when its wait ended (408)."""
        reply = self._call("GET", "/commands", timeout, poll_cap(self.config), "commands")
        if reply.status == 408:
            return []
        if reply.status != 200:
            self._fail(reply, "commands")
        doc = reply.json()
        commands = doc.get("commands") if isinstance(doc, dict) else None
        if not isinstance(commands, list) or not all(isinstance(c, dict) for c in commands):
            raise BadResponse("the commands answer has no list of commands", status=200)
        return commands

    def abort(self) -> None:
        """End the calls in flight at once (they fail as unreachable): a stopping service's
        long-poll must not outlive it."""
        abort_calls(self.session)

    def get_file(self, name: str) -> bytes | None:
        """A group file's bytes (``<group>.yml``), ``None`` when the server has none (404)."""
        reply = self._call(
            "GET",
            "/files",
            self.config.agent.read_timeout,
            download_cap(self.config),
            f"file {name}",
            params={"file_name": name},
        )
        if reply.status == 404:
            return None
        if reply.status != 200:
            self._fail(reply, f"file {name}")
        return reply.body

    # -- internals ---------------------------------------------------------------------

    def _call(
        self, method: str, path: str, read_timeout: float, cap: Cap, what: str, **kwargs: Any
    ) -> Reply:
        token = self.tokens.token()
        reply = self._send(method, path, token, read_timeout, cap, what, **kwargs)
        if reply.status in (401, 403):
            # Revoked, expired early, or the server restarted with a new signing key.
            token = self.tokens.renew(token)
            reply = self._send(method, path, token, read_timeout, cap, what, **kwargs)
        return reply

    def _send(
        self,
        method: str,
        path: str,
        token: str,
        read_timeout: float,
        cap: Cap,
        what: str,
        **kwargs: Any,
    ) -> Reply:
        extra = dict(kwargs)  # the same kwargs are sent again after a renewal: copy
        headers = {"Authorization": f"Bearer {token}", **extra.pop("headers", {})}
        response = send(
            self.session,
            method,
            self.base_url + path,
            headers=headers,
            timeout=(self.config.agent.connect_timeout, read_timeout),
            cap=cap,
            what=what,
            **extra,
        )
        return Reply(response.status_code, response.content, response.headers)

    def _fail(self, reply: Reply, what: str) -> None:
        if reply.status in (408, 429) or reply.status >= 500:
            raise ServerUnreachable(
                f"the server could not serve {what} now: {reply.message()} (HTTP {reply.status})",
                retry_after=reply.retry_after(),
            )
        raise BadResponse(
            f"unexpected answer for {what}: {reply.message()} (HTTP {reply.status})",
            status=reply.status,
        )


def auth_status(client: object | None, data_dir: Path | None = None) -> dict[str, Any] | None:
    """The ``auth`` block of a service's status; None when ``client`` has no token manager.

    ``client`` None: the service has not built its client yet (the forwarder does so at its
    first request); ``data_dir`` then tells ``not_enrolled`` from ``pending``. Nothing is
    built here: a status call must not change what the service will do.
    """
    if client is None:
        if data_dir is None:
            return None
        try:
            load_credentials(data_dir)
        except AgentbusError as exc:  # missing or unusable: the same fix
            return _no_tokens("not_enrolled", str(exc))
        return _no_tokens("pending", None)
    tokens = getattr(client, "tokens", None)
    return tokens.auth_status() if isinstance(tokens, TokenManager) else None


def _no_tokens(state: str, message: str | None) -> dict[str, Any]:
    keys = ("http_status", "last_failure_at", "next_try_in", "next_try_at")
    return {
        "state": state,
        "message": message,
        "failures": 0,
        **dict.fromkeys(keys),
        "token_expires_in": None,
        "token_expires_at": None,
        "authentications": 0,
    }
