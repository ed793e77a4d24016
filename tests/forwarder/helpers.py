"""Small helpers shared by the forwarder tests."""

from __future__ import annotations

from typing import Any

#: forwarder settings that keep tests quick: short batch interval and back-off
FAST = {"batch_interval": "100ms", "backoff_initial": "50ms", "backoff_max": "500ms"}


def stateless(seq: int, pad: int = 50) -> dict[str, Any]:
    return {"module": "logcollector", "collector": "file", "data": {"seq": seq, "msg": "x" * pad}}


def fim(seq: int, op: str = "update", doc: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "module": "fim",
        "collector": "file",
        "type": "stateful",
        "id": doc or f"doc-{seq}",
        "operation": op,
    }
    if op != "delete":
        event["data"] = {"file": {"path": f"/etc/f{seq}", "seq": seq}}
    return event


def seqs(events: list[dict[str, Any]]) -> list[int]:
    """The ``seq`` of every received event that carries one (data or data.file)."""
    out = []
    for e in events:
        data = e.get("data") or {}
        if "seq" in data:
            out.append(data["seq"])
        elif "seq" in data.get("file", {}):
            out.append(data["file"]["seq"])
    return out
