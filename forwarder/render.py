"""Validate one raw event map and render it as the NDJSON lines it will be sent as.

This is the forwarder's hot path: every event passes here once. The common case — a
stateless event with ``module``, ``collector`` and ``data`` and nothing unusual — is
checked inline and its header line comes from a small cache, which is several times
cheaper than building an :class:`~bus.envelope.Event`. Anything else goes through
``Event.from_wire``, the one authority on what is valid, so both paths accept exactly the
same events and every rejection carries ``Event.from_wire``'s reason and message.
"""

from __future__ import annotations

from typing import Any

import orjson

from bus.envelope import MAX_NAME_CHARS, Event
from bus.errors import InvalidEvent
from comms.ndjson import render_event

#: header lines kept per (module, collector); names come from local clients, so bounded
HEADER_CACHE_SIZE = 1024


class Renderer:
    """Turns raw maps into ``(stateful, rendered lines)``; raises :class:`InvalidEvent`."""

    def __init__(self) -> None:
        self._headers: dict[tuple[str, str], bytes] = {}

    def render(self, obj: Any) -> tuple[bool, bytes]:
        """Validate ``obj`` and return whether it is stateful and its rendered lines."""
        if type(obj) is dict:
            module = obj.get("module")
            collector = obj.get("collector")
            data = obj.get("data")
            if (
                type(module) is str
                and type(collector) is str
                and type(data) is dict
                and obj.get("type", "stateless") == "stateless"
                and "ts" not in obj
                and 0 < len(module) <= MAX_NAME_CHARS
                and 0 < len(collector) <= MAX_NAME_CHARS
            ):
                head = self._headers.get((module, collector))
                if head is None:
                    head = self._header(module, collector)
                try:
                    return False, head + b"\n" + orjson.dumps(data)
                except orjson.JSONEncodeError as exc:
                    raise InvalidEvent("not_json", f"data cannot be sent as JSON: {exc}") from None
        event = Event.from_wire(obj)
        try:
            return event.stateful, render_event(event)
        except TypeError as exc:
            raise InvalidEvent("not_json", f"data cannot be sent as JSON: {exc}") from None

    def _header(self, module: str, collector: str) -> bytes:
        if len(self._headers) >= HEADER_CACHE_SIZE:
            self._headers.clear()
        head = orjson.dumps({"module": module, "collector": collector})
        self._headers[(module, collector)] = head
        return head
