"""Command routing: which bus topic (module) executes a server action.

``<module>.<verb>`` goes to topic ``<module>``; a name without a dot (``set-group``,
``fetch-config``, ``restart``) goes to the built-in topic ``agent`` (docs/bus-protocol.md).
"""

from __future__ import annotations

#: the topic of the built-in agent executor
AGENT_TOPIC = "agent"


def topic_of(action: str) -> str:
    """The topic that executes ``action``."""
    module, dot, verb = action.partition(".")
    if dot and module and verb:
        return module
    return AGENT_TOPIC
