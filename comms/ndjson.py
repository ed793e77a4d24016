"""The NDJSON body of an events request (docs/protocol.md, "Events"), rendered once per event.

An event becomes its header line, then its data line (a stateful ``delete`` has no data
line); a body is the agent metadata line followed by the events' lines, joined by ``\\n``,
with no empty line and no trailing newline. The forwarder stores every event already
rendered, so building a request body is a concatenation (:func:`join_body`), never a
re-encoding.

orjson writes compact UTF-8 and escapes control characters inside strings, so a rendered
line never contains a raw newline: splitting a body on ``\\n`` gives back its lines.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from bus.envelope import Event

#: separator of lines in a body
NEWLINE = b"\n"


def render_json(obj: Any) -> bytes:
    """One compact JSON line; raises ``TypeError`` for what JSON cannot carry.

    orjson refuses bytes, non-string map keys and integers beyond 64 bits; NaN and
    infinities become ``null`` (orjson's choice; JSON has no such numbers).
    """
    try:
        return orjson.dumps(obj)
    except orjson.JSONEncodeError as exc:
        raise TypeError(str(exc)) from None


def render_header(header: dict[str, str]) -> bytes:
    """The header line of an event (see :meth:`bus.envelope.Event.header`)."""
    return orjson.dumps(header)


def render_event(event: Event) -> bytes:
    """Header line + ``\\n`` + data line; only the header for a stateful ``delete``."""
    head = orjson.dumps(event.header())
    if event.data is None:
        return head
    return head + NEWLINE + render_json(event.data)


def join_body(agent_line: bytes, rendered_events: Iterable[bytes]) -> bytes:
    """The request body: the agent line, then the rendered events, joined by ``\\n``.

    ``rendered_events`` may also be runs of several rendered events (stored chunks): they
    are joined the same way. Memoryviews are accepted, to avoid copying stored chunks.
    """
    return NEWLINE.join([agent_line, *rendered_events])


def split_lines(rendered: bytes) -> list[bytes]:
    """The lines of rendered events (or of a body)."""
    return rendered.split(NEWLINE)


def event_spans(rendered: bytes, stateful: bool) -> list[bytes]:
    """Cut rendered events (several, joined by ``\\n``) back into one ``bytes`` per event.

    Stateless events are always two lines. A stateful event is one line when its header
    says ``"operation":"delete"`` and two otherwise, so headers are decoded here; this is
    for the rare paths (splitting a batch, quarantining one event), not the hot one.
    """
    lines = split_lines(rendered)
    if not stateful:
        return [lines[i] + NEWLINE + lines[i + 1] for i in range(0, len(lines) - 1, 2)]
    out: list[bytes] = []
    i = 0
    while i < len(lines):
        head = lines[i]
        try:
            is_delete = orjson.loads(head).get("operation") == "delete"
        except (orjson.JSONDecodeError, AttributeError):
            is_delete = False
        if is_delete or i + 1 >= len(lines):
            out.append(head)
            i += 1
        else:
            out.append(head + NEWLINE + lines[i + 1])
            i += 2
    return out
