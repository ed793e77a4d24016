"""Command results as the server protocol defines them (docs/protocol.md, "Commands").

Shared by the executor SDK (:mod:`bus.executor`) and the commander, so that a result code
or the wording of a refusal is written once. On the wire (bus messages, the stateful
``command`` events, commands.db) a code is a plain integer: :class:`ResultCode` is an
:class:`~enum.IntEnum`, equal to and encoded as its number.
"""

from __future__ import annotations

import enum


class ResultCode(enum.IntEnum):
    """The result code of a command."""

    SUCCESS = 0
    FAILURE = 1
    #: not final: the executor is still working (``restart`` answers this)
    IN_PROGRESS = 2
    #: no result before the command's timeout (decided by the commander)
    TIMEOUT = 3
    UNKNOWN = 4

    @classmethod
    def of(cls, value: object) -> ResultCode | None:
        """The code ``value`` stands for; None unless it is an integer 0-4 (a bool is not)."""
        if isinstance(value, bool) or not isinstance(value, int):
            return None
        try:
            return cls(value)
        except ValueError:
            return None

    @property
    def label(self) -> str:
        """Lower-case words for messages: ``"in progress"``."""
        return self.name.lower().replace("_", " ")


#: the message for an action nobody handles, or bad arguments (the server protocol's wording)
NOT_VALID = "Command is not valid"
#: longest result message sent to, and forwarded by, the commander (longer ones are cut)
MAX_MESSAGE_CHARS = 4096
