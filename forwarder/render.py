"""Validate one raw event map and render it as the NDJSON lines it will be sent as.

This is the forwarder's hot path: every event passes here once. The common case — a
stateless event with ``module``, ``collector`` and ``data`` and nothing unusual — is
checked inline and its header line comes from a small cache, which is several times
cheaper than building an :class:`~bus.envelope.Event`. Anything else goes through
``Event.from_wire``, the one authority on what is valid, so both paths accept exactly the
same events and every rejection carries ``Event.from_wire``'s reason and message.

On top of the envelope (:func:`check_document_of`), the document of a stateful
``create``/``update`` is checked as the indexer would check it against its index's
mapping (:func:`bus.indices.check_document`): a document the server would refuse item by
item is refused here, at the bus, where its sender still hears about it
(``check_documents = false`` turns this off; empty data is refused either way).
"""

from __future__ import annotations

from typing import Any

import orjson

from bus.envelope import MAX_NAME_CHARS, Event
from bus.errors import InvalidEvent
from bus.indices import check_document, index_to_check
from comms.ndjson import render_event

#: header lines kept per (module, collector); names come from local clients, so bounded
HEADER_CACHE_SIZE = 1024


class Renderer:
    """Turns raw maps into ``(stateful, rendered lines)``; raises :class:`InvalidEvent`."""

    def __init__(self, *, check_documents: bool = True) -> None:
        self.check_documents = check_documents
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
                # data that looks like a header is refused by Event.from_wire
                and (type(data.get("collector")) is not str or type(data.get("module")) is not str)
            ):
                head = self._headers.get((module, collector))
                if head is None:
                    head = self._header(module, collector)
                try:
                    return False, head + b"\n" + orjson.dumps(data)
                except orjson.JSONEncodeError as exc:
                    raise InvalidEvent("not_json", f"data cannot be sent as JSON: {exc}") from None
        event = Event.from_wire(obj)
        if event.stateful:
            check_document_of(event, mapping=self.check_documents)
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


def check_document_of(event: Event, *, mapping: bool = True) -> None:
    """Refuse (:class:`InvalidEvent`, ``bad_value``) the document of a stateful
    create/update that the server would refuse: empty data, and — with ``mapping`` — what
    its index's mapping refuses. What the forwarder adds to ``Event.from_wire``."""
    if event.data is None:
        return  # a delete: no document
    if not event.data:
        # Whatever the index: the server splices data into the agent line by its braces,
        # and {} leaves a dangling comma (the item fails).
        raise InvalidEvent(
            "bad_value",
            f"data of a stateful {event.operation} must not be empty: the server would "
            "refuse the document",
        )
    if not mapping:
        return
    index = index_to_check(event.module, event.collector)
    problem = check_document(index, event.data)
    if problem is not None:
        where = f"data.{problem.field}" if problem.field else "data"
        raise InvalidEvent("bad_value", f"{where} is refused by the index {index.name}: {problem}")
