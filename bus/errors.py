"""The root of agentbus's exception tree, and the bus's own errors.

Every part of agentbus raises a child of :class:`AgentbusError`; the CLI catches the base,
prints one line on stderr and exits with the child's ``exit_code``. The tree lives here
because ``bus`` is the one package every other part (and every collector script) may
import.
"""

from __future__ import annotations

#: exit codes of the ``agentbus`` command (a fixed contract: README, "Exit codes")
EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_SERVER = 3


class AgentbusError(Exception):
    """Base of every error agentbus raises on purpose; ``str()`` is the user's message."""

    exit_code: int = EXIT_RUNTIME


class BusError(AgentbusError):
    """A local bus socket could not be used (bind, connect, send or receive)."""


class BusTimeout(BusError):
    """Nobody answered on a bus socket within the allowed time."""


class EndpointInUse(BusError):
    """Another live process already serves this bus endpoint."""

    exit_code = EXIT_USAGE


class InvalidEvent(AgentbusError):
    """An event (or frame) failed validation; ``reason`` is a stable counter key."""

    exit_code = EXIT_USAGE

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
