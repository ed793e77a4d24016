"""Errors of the server client, one per outcome, all children of ``AgentbusError``.

How a service should react (the contract the forwarder and the commander rely on):

- :class:`ServerRejected` — the server refuses this agent's credentials (401 invalid key,
  403 agent does not exist) or refused an enrollment. Retrying cannot help: stop with exit 3.
- :class:`ServerUnreachable` — no answer, or "not now" (connection refused, timeout, TLS
  failure, 408/429/5xx on authentication). Back off and retry; ``retry_after`` is a hint.
- :class:`BadResponse` — the server answered something we cannot use (garbled JSON, a missing
  field, an unexpected status). Back off and retry; it is logged.
- :class:`NotEnrolled` — there are no usable credentials: run ``agentbus register`` (exit 2).
"""

from __future__ import annotations

from bus.errors import EXIT_SERVER, EXIT_USAGE, AgentbusError


class ServerError(AgentbusError):
    """The server could not be reached or did not accept what we sent."""

    exit_code = EXIT_SERVER


class ServerUnreachable(ServerError):
    """No usable answer from the server right now (network, timeout, TLS, busy); retry later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


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

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class NotEnrolled(AgentbusError):
    """This agent has no usable credentials; run ``agentbus register`` first."""

    exit_code = EXIT_USAGE


class AlreadyEnrolled(AgentbusError):
    """Enrollment refused because the agent is already enrolled and ``--force`` was not given."""

    exit_code = EXIT_USAGE
