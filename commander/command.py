"""A command as the commander got it from the server: parsed once from its JSON, validated.

That is a :class:`ServerCommand`; what an executor receives over the bus is the SDK's
:class:`bus.executor.Command`, built from :meth:`ServerCommand.bus_message`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from commander.routing import topic_of

#: longest document id accepted (the stateful event id limit of the bus envelope)
MAX_DOCUMENT_ID_CHARS = 512
#: longest action name accepted
MAX_NAME_CHARS = 256


class BadCommand(Exception):
    """The server sent something that is not a command we can run; ``reason`` is a counter key.

    ``document_id`` is set when the command can still be answered (with result 1).
    """

    def __init__(self, reason: str, message: str, document_id: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.document_id = document_id


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerCommand:
    """One command from the server: identity, action, arguments, deadline of its result."""

    document_id: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    #: seconds allowed from receipt to result
    timeout: float
    #: epoch seconds when the commander received it
    received_at: float

    @property
    def topic(self) -> str:
        return topic_of(self.name)

    @property
    def deadline(self) -> float:
        return self.received_at + self.timeout

    def bus_message(self, now: float | None = None) -> dict[str, Any]:
        """The map published to executors (docs/bus-protocol.md: id, name, args, timeout, issued_at)."""
        left = self.deadline - (time.time() if now is None else now)
        return {
            "id": self.document_id,
            "name": self.name,
            "args": self.args,
            "timeout": max(0.0, round(left, 3)),
            "issued_at": self.received_at,
        }

    @classmethod
    def from_server(
        cls, raw: Any, *, default_timeout: float, now: float | None = None
    ) -> ServerCommand:
        """Validate one element of the server's ``commands`` list (docs/protocol.md, "Commands")."""
        if not isinstance(raw, dict):
            raise BadCommand("not_object", "a command must be a JSON object")
        doc = raw.get("document_id")
        if not isinstance(doc, str) or not doc:
            raise BadCommand("missing_document_id", "a command without a document_id")
        if len(doc) > MAX_DOCUMENT_ID_CHARS:
            raise BadCommand("bad_document_id", "document_id is too long")
        action = raw.get("action")
        if not isinstance(action, dict):
            raise BadCommand("missing_action", f"command {doc} has no action", doc)
        name = action.get("name")
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
            raise BadCommand("bad_action_name", f"command {doc} has no valid action.name", doc)
        args = action.get("args")
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise BadCommand("bad_args", f"command {doc}: action.args is not an object", doc)
        timeout = raw.get("timeout")
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            timeout = default_timeout
        return cls(
            document_id=doc,
            name=name,
            args=args,
            timeout=float(timeout),
            received_at=time.time() if now is None else now,
        )
