"""Errors of the server client, one per outcome, all children of ``AgentbusError``.

How a service should react (the contract the forwarder and the commander rely on):

- :class:`ServerRejected` — the server refuses this agent's credentials (401 ``Invalid key``,
  403 ``Agent does not exist``) or refused an enrollment. Retrying cannot help: stop with
  exit 3.
- :class:`ServerUnreachable` — no answer, or "not now" (connection refused, timeout, TLS
  failure, and every other failed authentication: 408, 429, 5xx, a 403 such as "Couldn't
  connect to the indexer: ..."). Back off and retry; ``retry_after`` is a hint.
- :class:`BadResponse` — the server answered something we cannot use (garbled JSON, a missing
  field, an unexpected status). Back off and retry; it is logged.
- :class:`NotEnrolled` — there are no usable credentials: run ``agentbus register`` (exit 2).
- :class:`InsecureServerURL` — a plain ``http://`` URL to a host other than loopback while
  ``[agent] allow_insecure_http`` is off: a configuration error, refused at start (exit 2).

:class:`TooLarge` and :class:`Compressed` are :class:`BadResponse`: an answer over its byte
cap, or compressed although the agent asked for none, is a server error like any other
(retried with back-off, shown in status; nothing of it is kept).
"""

from __future__ import annotations

import json
from typing import Any

from bus.errors import EXIT_SERVER, EXIT_USAGE, AgentbusError

#: longest server message kept (one line on stderr, one field in status)
MAX_MESSAGE = 300


class ServerError(AgentbusError):
    """The server could not be reached or did not accept what we sent."""

    exit_code = EXIT_SERVER


class ServerUnreachable(ServerError):
    """No usable answer from the server right now (network, timeout, TLS, busy); retry later."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        #: the HTTP status and the server's own words, when it answered at all
        self.status = status
        self.server_message = server_message


class TLSFailure(ServerUnreachable):
    """The TLS handshake failed (certificate not trusted, wrong hostname, protocol error)."""


class ServerRejected(ServerError):
    """The server refused us for good (bad credentials, unknown agent, invalid enrollment)."""

    def __init__(self, status: int, message: str, *, what: str = "", hint: str = "") -> None:
        text = f"{what}: {message} (HTTP {status})" if what else f"{message} (HTTP {status})"
        super().__init__(f"{text}; {hint}" if hint else text)
        self.status = status
        self.message = message

    def copy(self) -> ServerRejected:
        """The same refusal as a new exception (no traceback attached)."""
        fresh = ServerRejected(self.status, self.message)
        fresh.args = self.args
        return fresh


class BadResponse(ServerError):
    """The server's answer was unusable: garbled body, missing field, unexpected status."""

    def __init__(
        self, message: str, *, status: int | None = None, server_message: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.server_message = server_message


class Redirected(BadResponse):
    """The server answered with a redirect (3xx): never followed, by design.

    A followed redirect would carry the agent's key, its token or its events to another
    origin (plain http included), and a redirected events POST would count as delivered.
    """


class TooLarge(BadResponse):
    """An answer body larger than the cap of its endpoint: refused, nothing of it kept."""

    def __init__(self, what: str, origin: str, limit: int, key: str, *, status: int) -> None:
        super().__init__(
            f"the answer of {origin} for {what} is larger than {limit} bytes "
            f"(the cap set by {key}): refused",
            status=status,
        )
        self.what = what
        self.limit = limit
        self.key = key


class Compressed(BadResponse):
    """A compressed answer although every request asks for ``Accept-Encoding: identity``.

    Refused rather than inflated: a few kilobytes of gzip inflate to gigabytes, and a
    server (or proxy) that ignores our Accept-Encoding is broken anyway.
    """


class NotEnrolled(AgentbusError):
    """This agent has no usable credentials; run ``agentbus register`` first."""

    exit_code = EXIT_USAGE


class InsecureServerURL(AgentbusError):
    """A plain ``http://`` server URL to a non-loopback host: the key, the tokens and the
    enrollment password would cross the network in clear."""

    exit_code = EXIT_USAGE


class AlreadyEnrolled(AgentbusError):
    """Enrollment refused because the agent is already enrolled and ``--force`` was not given."""

    exit_code = EXIT_USAGE


def error_of(body: bytes | str, status: int, reason: str = "") -> tuple[str, int | None]:
    """The server's message and error code from an error body, as one short line.

    Reads both shapes the server uses: the comms API's ``{"message", "code"}`` and the
    management API's ``{"title", "detail"}`` (sometimes with ``"error": <int>``); the
    detail says more than the title, so it wins. Anything else: an excerpt of the body.
    """
    try:
        doc: Any = json.loads(body) if body else None
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        message = _text(doc.get("message")) or _text(doc.get("detail")) or _text(doc.get("title"))
        code = doc.get("code", doc.get("error"))
        return (
            message or reason or f"HTTP {status}",
            code if isinstance(code, int) and not isinstance(code, bool) else None,
        )
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return _one_line(text)[:120] or reason or f"HTTP {status}", None


def _text(value: Any) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str):  # a validator may send a list or an object
        value = json.dumps(value, separators=(",", ":"), default=str)
    return _one_line(value)[:MAX_MESSAGE]


def _one_line(text: str) -> str:
    return " ".join(text.split())
