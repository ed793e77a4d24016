"""The stateful rules on their own: refusals at the bus, request size, per-item answers.

The per-item tests drive a real :class:`Sender` (real store, batcher, quarantine files)
against a small in-process indexer with the server's semantics: create of an existing
document → 409, update or delete of a missing one → 404.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from bus.errors import InvalidEvent
from forwarder.backoff import Backoff
from forwarder.batcher import Batcher, Piece, pack
from forwarder.chunker import Chunk, Chunker
from forwarder.quarantine import Quarantine
from forwarder.render import Renderer
from forwarder.sender import Sender
from forwarder.store import Store

AGENT_LINE = b'{"agent":{"id":"a","groups":[],"host":{}}}'


def package(doc: str, op: str = "create", name: str | None = None, **extra: Any) -> dict[str, Any]:
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


def command_result(doc: str) -> dict[str, Any]:
    return {
        "module": "command",
        "type": "stateful",
        "id": doc,
        "operation": "update",
        "data": {"command": {"result": {"code": 0, "message": "done"}}},
    }


def rendered(event: dict[str, Any]) -> bytes:
    stateful, lines = Renderer().render(event)
    assert stateful
    return lines


# -- refusals at the bus --------------------------------------------------------------------


@pytest.mark.parametrize("extra", [{}, {"ts": 1.5}, {"type": "stateless"}])
def test_stateless_data_that_looks_like_a_header_is_refused_on_both_paths(
    extra: dict[str, Any],
) -> None:
    event = {"module": "app", "collector": "c", "data": {"module": "a", "collector": "b"}, **extra}
    with pytest.raises(InvalidEvent) as info:
        Renderer().render(event)
    assert info.value.reason == "bad_value"
    assert "header" in info.value.message and "lose the event" in info.value.message
    # one of the two is enough to be a header only with the other: these are fine
    for data in ({"module": "a"}, {"module": "a", "collector": 5}, {"x": {"module": "a"}}):
        assert Renderer().render({**event, "data": data})[0] is False


def test_stateful_documents_the_index_refuses_are_refused_with_the_field_and_index() -> None:
    renderer = Renderer()
    with pytest.raises(InvalidEvent) as info:
        renderer.render(package("p1", nope=1))
    assert info.value.reason == "bad_value"
    message = info.value.message
    assert "data.package.nope" in message and "wazuh-states-inventory-packages" in message
    assert "strict_dynamic_mapping_exception" in message

    with pytest.raises(InvalidEvent) as info:
        renderer.render(package("p1", size="big"))
    assert "data.package.size" in info.value.message
    assert "mapper_parsing_exception" in info.value.message

    empty = {**package("p1", "update"), "data": {}}
    with pytest.raises(InvalidEvent) as info:
        renderer.render(empty)
    assert info.value.reason == "bad_value" and "empty" in info.value.message

    # a delete has no document; a valid document passes
    assert renderer.render(package("p1", "delete"))[0] is True
    assert renderer.render(package("p1", size=10))[0] is True


def test_a_document_of_an_index_without_a_known_mapping_is_checked_for_what_any_refuses() -> None:
    event = {"module": "vulnerability", "collector": "scanner", "type": "stateful", "id": "v"}
    renderer = Renderer()
    assert renderer.render({**event, "operation": "create", "data": {"anything": 1}})[0]
    for data in ({"agent": {"id": "x"}}, {"": 1}):
        with pytest.raises(InvalidEvent) as info:
            renderer.render({**event, "operation": "update", "data": data})
        assert "wazuh-states-vulnerabilities" in info.value.message


def test_check_documents_off_lets_the_server_decide() -> None:
    renderer = Renderer(check_documents=False)
    assert renderer.render(package("p1", nope=1))[0] is True
    with pytest.raises(InvalidEvent):  # {} is refused whatever the mapping
        renderer.render({**package("p1"), "data": {}})


# -- request size ------------------------------------------------------------------------


def test_chunker_closes_before_an_event_would_overflow_it() -> None:
    chunker = Chunker(100, 1.0)
    assert not chunker.overflows(500)  # an empty chunk takes any event
    chunker.add(b"x" * 60)
    assert not chunker.overflows(38) and chunker.overflows(39)


def test_pack_cuts_requests_within_the_budget_in_order() -> None:
    events = [rendered(package(f"p{i}")) for i in range(30)]
    big = rendered(package("big", description="d" * 3000))
    body = b"\n".join(events[:20])
    pieces = [Piece(1, 20, body), Piece(2, 1, big), Piece(3, 10, b"\n".join(events[20:]))]
    requests, oversized = pack(pieces, 1000, True)
    assert oversized == 1
    flat = [p.body for request in requests for p in request]
    assert b"\n".join(flat) == b"\n".join([body, big, *events[20:]])  # same events, same order
    for request in requests:
        cost = sum(len(p.body) + 1 for p in request)
        assert cost <= 1000 or [p.body for p in request] == [big]
    assert [[p.body for p in r] for r in requests].count([big]) == 1
    # everything fits: one request, pieces untouched
    assert pack(pieces, 10**6, True) == ([pieces], 0)


# -- per-item answers --------------------------------------------------------------------


class Reply:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body

    def message(self) -> str:
        return ""

    def retry_after(self) -> float | None:
        return None


class Indexer:
    """The stateful endpoint with the indexer's semantics; commands are the server's own."""

    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], dict[str, Any]] = {}
        self.commands: set[str] = set()
        self.requests: list[list[tuple[str, str]]] = []  # per request: (operation, id)
        self.sizes: list[int] = []

    def post_events(self, kind: Any, body: bytes, timeout: float | None = None) -> Reply:
        assert kind == "stateful"
        self.sizes.append(len(body))
        lines = body.split(b"\n")[1:]
        results, seen = [], []
        i = 0
        while i < len(lines):
            head = orjson.loads(lines[i])
            i += 1
            op, doc = head["operation"], head["id"]
            key = (head.get("collector") or head["module"], doc)
            data = None
            if op != "delete":
                data = orjson.loads(lines[i])
                i += 1
            seen.append((op, doc))
            if head["module"] == "command":
                status = 200 if doc in self.commands else 404
            elif op == "delete":
                status = 200 if self.docs.pop(key, None) is not None else 404
            elif op == "create":
                status = 409 if key in self.docs else 201
                self.docs.setdefault(key, data)  # type: ignore[arg-type]
            else:
                status = 200 if key in self.docs else 404
                if status == 200:
                    self.docs[key] = data  # type: ignore[assignment]
            results.append({"id": doc, "status": status, "result": str(status)})
        self.requests.append(seen)
        return Reply(200, orjson.dumps({"results": results}))


@pytest.fixture
def parts(tmp_path: Path) -> Any:
    store = Store(tmp_path / "queue", "stateful", max_bytes=10**9)
    quarantine = Quarantine(tmp_path / "queue" / "quarantine.db")
    indexer = Indexer()
    sender = Sender(
        "stateful",
        store=store,
        batcher=Batcher(store, max_bytes=2000, max_events=10**6, interval=0.0),
        backoff=Backoff(0.01, 0.1),
        quarantine=quarantine,
        client=lambda: indexer,
        agent_line=lambda: AGENT_LINE,
        max_body=2000,
    )
    yield store, sender, indexer, quarantine
    store.close()
    quarantine.close()


def put(store: Store, *events: dict[str, Any]) -> None:
    body = b"\n".join(rendered(e) for e in events)
    assert store.put(Chunk(body=body, events=len(events), ts=1.0))


def send_one_batch(store: Store, sender: Sender) -> None:
    assert store.ready_events, "nothing to send"
    batch = sender.batcher.next_batch(threading.Event(), max_bytes=sender._room())
    assert batch is not None and sender.deliver(batch)
    store.ack(batch.chunks)


def test_resent_creates_and_deletes_count_as_delivered(parts: Any) -> None:
    store, sender, indexer, quarantine = parts
    put(store, package("a"), package("b"), package("b", "delete"))
    send_one_batch(store, sender)
    put(store, package("a"), package("b", "delete"))  # both sent again (a crash, a retry)
    send_one_batch(store, sender)
    figures = sender.figures()
    assert figures["items_already_created"] == 1 and figures["items_already_deleted"] == 1
    assert figures["item_failures"] == 0 and quarantine.count() == 0
    assert indexer.docs[("packages", "a")] == {"package": {"name": "a", "version": "1.0"}}


def test_an_update_of_a_missing_document_is_sent_again_as_a_create_before_the_next_batch(
    parts: Any,
) -> None:
    store, sender, indexer, quarantine = parts
    put(store, package("lost", "update", name="v2"), package("other"))
    put(store, package("next"))
    sender.batcher.max_events = 2  # one chunk per batch
    send_one_batch(store, sender)
    assert indexer.requests[-1] == [("create", "lost")]  # right after its batch
    send_one_batch(store, sender)
    assert indexer.requests[-1] == [("create", "next")]
    assert indexer.docs[("packages", "lost")] == {"package": {"name": "v2", "version": "1.0"}}
    assert sender.figures()["items_recreated"] == 1 and quarantine.count() == 0


def test_no_create_when_a_later_event_settles_the_document(parts: Any) -> None:
    store, sender, indexer, quarantine = parts
    # in the same batch: a later create, a later delete; an update twice: the last one wins
    put(
        store,
        package("x", "update"),
        package("x"),
        package("y", "update"),
        package("y", "delete"),
        package("z", "update", name="z1"),
        package("z", "update", name="z2"),
        package("w", "update"),
    )
    # still in the queue, in a later batch: a delete of w
    put(store, package("w", "delete"), package("v"))
    sender.batcher.max_events = 7  # one chunk per batch
    batch = sender.batcher.next_batch(threading.Event(), max_bytes=sender._room())
    assert batch is not None and len(batch.chunks) == 1  # the delete of w waits in the queue
    assert sender.deliver(batch)
    store.ack(batch.chunks)
    creates = [doc for request in indexer.requests for op, doc in request if op == "create"]
    assert creates == ["x", "z"]
    assert indexer.docs[("packages", "z")]["package"]["name"] == "z2"
    figures = sender.figures()
    assert figures["items_recreated"] == 1
    assert figures["items_recreate_moot"] == 4  # x, y, z's first update, w
    assert quarantine.count() == 0


def test_a_command_result_for_a_missing_command_is_quarantined_never_created(
    parts: Any,
) -> None:
    store, sender, indexer, quarantine = parts
    indexer.commands.add("known")
    put(store, command_result("known"), command_result("unknown"))
    send_one_batch(store, sender)
    assert all(op == "update" for request in indexer.requests for op, _doc in request)
    [entry] = quarantine.entries()
    assert entry["status"] == 404 and '"id":"unknown"' in entry["event"]
    assert "no command 'unknown'" in entry["message"]
    assert sender.figures()["item_failures"] == 1


def test_requests_stay_within_the_bound_and_an_oversized_document_goes_alone(
    parts: Any,
) -> None:
    store, sender, indexer, _quarantine = parts
    events = [package(f"p{i:03}") for i in range(100)]
    events.insert(50, package("huge", description="d" * 5000))
    put(store, *events)  # one chunk far bigger than a request
    while store.events:
        send_one_batch(store, sender)
    assert len(indexer.docs) == 101
    assert [doc for request in indexer.requests for _op, doc in request] == [
        e["id"] for e in events
    ]
    huge = [i for i, request in enumerate(indexer.requests) if ("create", "huge") in request]
    assert len(indexer.requests[huge[0]]) == 1
    assert all(size <= 2000 for i, size in enumerate(indexer.sizes) if i != huge[0])
    assert sender.figures()["stateful_oversized"] == 1
