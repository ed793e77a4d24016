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
        # a document the wazuh-states-fim mapping accepts; the size carries the sequence
        event["data"] = {"file": {"path": f"/etc/f{seq}", "size": seq}}
    return event


def package(seq: int, op: str = "create", doc: str | None = None) -> dict[str, Any]:
    """An inventory packages event whose document the index accepts (~400 bytes)."""
    event: dict[str, Any] = {
        "module": "inventory",
        "collector": "packages",
        "type": "stateful",
        "id": doc or f"pkg-{seq:06}",
        "operation": op,
    }
    if op != "delete":
        event["data"] = package_document(seq)
    return event


def package_document(seq: int) -> dict[str, Any]:
    return {
        "@timestamp": "2025-01-15T10:00:00.000Z",
        "package": {
            "architecture": "amd64",
            "description": f"package number {seq}: a library of common helpers and tools "
            "used by many programs on this host, with its documentation",
            "installed": "2024-11-02T08:30:00Z",
            "name": f"lib-package-{seq}",
            "path": f"/usr/share/doc/lib-package-{seq}",
            "size": 100_000 + seq,
            "type": "deb",
            "version": f"1.{seq % 100}.{seq % 7}-1+deb12u1",
        },
    }


def command_result(doc: str, code: int = 0, message: str = "done") -> dict[str, Any]:
    """A command result, as the commander sends it (an update of the server's document)."""
    return {
        "module": "command",
        "type": "stateful",
        "id": doc,
        "operation": "update",
        "data": {"command": {"result": {"code": code, "message": message}}},
    }


def seqs(events: list[dict[str, Any]]) -> list[int]:
    """The ``seq`` of every received event that carries one (data or data.file)."""
    out = []
    for e in events:
        data = e.get("data") or {}
        if "seq" in data:
            out.append(data["seq"])
        elif "size" in data.get("file", {}):
            out.append(data["file"]["size"])
    return out
