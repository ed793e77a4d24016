"""Wake-ups for held long-polls: one asyncio.Event per waiting request, keyed by agent.

A held ``GET /api/v1/commands`` costs one Event and one small task, never a worker thread,
so hundreds of agents can wait at once. Everything runs on the event loop thread, so there is
no lost wake-up between "check the store" and "start waiting".
"""

from __future__ import annotations

import asyncio
from collections import defaultdict


class CommandWaiters:
    """Who is waiting for commands right now."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = defaultdict(set)

    def register(self, agent_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiting[agent_id].add(event)
        return event

    def unregister(self, agent_id: str, event: asyncio.Event) -> None:
        events = self._waiting.get(agent_id)
        if events is not None:
            events.discard(event)
            if not events:
                del self._waiting[agent_id]

    def notify(self, agent_id: str) -> None:
        for event in self._waiting.get(agent_id, ()):
            event.set()

    def count(self) -> int:
        return sum(len(events) for events in self._waiting.values())
