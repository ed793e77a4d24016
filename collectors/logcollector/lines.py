"""What every source's event shares: the text of one line (or entry, or command output).

``event.original`` is the text; bytes that are not UTF-8 are kept (decoded with
replacement characters, the exact bytes in ``event.original_base64``, tagged
``invalid_utf8``); text cut at the maximum size is flagged (``event.truncated``, tagged
``truncated``). ``event.created`` is when the collector read it.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from collectors import metrics as km
from core.metrics import Registry


def now_iso() -> str:
    """Now, ISO 8601 UTC with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def text_event(
    raw: bytes, truncated: bool, created: str, metrics: Registry
) -> tuple[dict[str, Any], list[str] | None]:
    """The ``event`` block of one line and its tags (None when there are none)."""
    tags: list[str] | None = None
    try:
        event: dict[str, Any] = {"created": created, "original": raw.decode("utf-8")}
    except UnicodeDecodeError:
        # Keep the line readable and its exact bytes recoverable.
        event = {
            "created": created,
            "original": raw.decode("utf-8", errors="replace"),
            "original_base64": base64.b64encode(raw).decode("ascii"),
        }
        tags = ["invalid_utf8"]
        metrics.inc(km.INVALID_UTF8_LINES)
    if truncated:
        event["truncated"] = True
        tags = [*(tags or []), "truncated"]
        metrics.inc(km.TRUNCATED_LINES)
    return event, tags
