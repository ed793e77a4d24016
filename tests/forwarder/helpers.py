"""Small helpers shared by the forwarder tests."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson

from forwarder.backoff import Backoff
from forwarder.batcher import Batch, Batcher
from forwarder.chunker import Chunk
from forwarder.quarantine import Quarantine
from forwarder.render import Renderer
from forwarder.sender import Poster, Sender
from forwarder.store import Store

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


# -- parts of the forwarder on their own (no sockets) ----------------------------------------

#: the agent line of bodies built by tests that have no credentials
AGENT_LINE = b'{"agent":{"id":"a","groups":[],"host":{}}}'


def chunk(*seqs: int) -> Chunk:
    """A stored chunk of stateless events carrying these ``seq`` values."""
    lines = [b'{"module":"m","collector":"c"}\n' + orjson.dumps({"seq": s}) for s in seqs]
    return Chunk(body=b"\n".join(lines), events=len(seqs), ts=1000.0 + seqs[0])


def body_seqs(body: bytes) -> list[int]:
    """The ``seq`` of every data line of rendered stateless events."""
    return [orjson.loads(line)["seq"] for line in body.split(b"\n") if b"seq" in line]


class RecordingBackoff(Backoff):
    """The real back-off, remembering every (Retry-After, delay) it was given and chose."""

    def __init__(self, initial: float, maximum: float, **kwargs: Any) -> None:
        super().__init__(initial, maximum, **kwargs)
        self.failures: list[tuple[float | None, float]] = []

    def failure(self, ticket: int, retry_after: float | None = None) -> float:
        delay = super().failure(ticket, retry_after)
        self.failures.append((retry_after, delay))
        return delay


class SenderRig:
    """A real :class:`Sender` with its real store, batcher and quarantine (SQLite files in
    ``directory``), posting to ``server`` (usually a :class:`tests.fakes.server.FakeServer`).

    The back-off (unless ``backoff`` is given) draws no jitter (``rng`` 0): a failed request is sent again at once unless
    a Retry-After asks for more, so no test waits on a fixed delay. Drive it step by step
    (:meth:`step`, :meth:`drain`: batches are taken, delivered and acked in the test's
    thread) or with the sender's own threads (:meth:`start`, :meth:`stop`).
    """

    def __init__(
        self,
        directory: Path,
        server: Poster,
        kind: str = "stateless",
        *,
        batch_max_bytes: int = 1_000_000,
        batch_max_events: int = 100_000,
        max_body: int | None = None,
        workers: int = 1,
        max_queue_bytes: int = 10**9,
        drop_oldest: bool = False,
        backoff: RecordingBackoff | None = None,
    ) -> None:
        self.kind = kind
        self.server = server
        self.renderer = Renderer()
        self.store = Store(
            directory / "queue", kind, max_bytes=max_queue_bytes, drop_oldest=drop_oldest
        )
        self.quarantine = Quarantine(directory / "queue" / "quarantine.db")
        self.backoff = backoff or RecordingBackoff(0.001, 0.001, rng=lambda: 0.0)
        self.batcher = Batcher(
            self.store, max_bytes=batch_max_bytes, max_events=batch_max_events, interval=0.0
        )
        self.sender = Sender(
            kind,
            store=self.store,
            batcher=self.batcher,
            backoff=self.backoff,
            quarantine=self.quarantine,
            client=lambda: server,
            agent_line=lambda: AGENT_LINE,
            workers=workers,
            max_body=max_body,
        )

    def render(self, event: dict[str, Any]) -> bytes:
        stateful, lines = self.renderer.render(event)
        assert stateful == (self.kind == "stateful"), event
        return lines

    def put(self, *events: dict[str, Any]) -> None:
        """Commit these events to the queue as one chunk (as one ingest request would)."""
        body = b"\n".join(self.render(e) for e in events)
        assert self.store.put(Chunk(body=body, events=len(events), ts=time.time()))

    def step(self) -> Batch:
        """Take the next batch, deliver it (retrying until the server's final answer) and
        ack it, as a sender thread does once."""
        assert self.store.ready_events, "nothing to send"
        batch = self.batcher.next_batch(threading.Event())
        assert batch is not None
        assert self.sender.deliver(batch)
        self.store.ack(batch.chunks)
        return batch

    def drain(self, max_batches: int = 1000) -> int:
        """:meth:`step` until nothing is ready; returns the number of batches."""
        n = 0
        while self.store.ready_events:
            assert n < max_batches, "the queue does not drain"
            self.step()
            n += 1
        return n

    def start(self) -> None:
        self.sender.start()

    def stop(self) -> None:
        self.sender.request_stop()
        assert self.sender.join(time.monotonic() + 5)

    def figures(self) -> dict[str, Any]:
        return self.sender.figures()

    def close(self) -> None:
        self.sender.request_stop()
        self.sender.join(time.monotonic() + 5)
        self.store.close()
        self.quarantine.close()


def inventory_package(
    doc: str, op: str = "create", name: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A packages event with a small document; ``extra`` adds fields to ``data.package``
    (the index refuses those its mapping does not have)."""
    event: dict[str, Any] = {
        "module": "inventory",
        "collector": "packages",
        "type": "stateful",
        "id": doc,
        "operation": op,
    }
    if op != "delete":
        event["data"] = {"package": {"name": name or doc, "version": "1.0", **extra}}
    return event


def rendered(event: dict[str, Any]) -> bytes:
    """The NDJSON lines of a stateful event, as the forwarder stores them."""
    stateful, lines = Renderer().render(event)
    assert stateful
    return lines
