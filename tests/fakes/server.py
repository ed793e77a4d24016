"""An in-memory server for tests of the forwarder's senders and the commander's poller.

Modelled on dramatiq's ``StubBroker``: the real code under test is unchanged, only the
thing at the other end is swapped for an object that answers at once and remembers
everything. :class:`FakeServer` implements the two protocols the services use to talk
to the server, with the contract of :class:`comms.api.ServerClient` *after* its own
token renewal (a 401/403 the fake answers is what the client returns once its one
renewal did not help):

- :class:`forwarder.sender.Poster` — ``post_events(kind, body, timeout)`` returns a
  :class:`comms.api.Reply` (the real one: ``status``, ``body``, ``message()``,
  ``retry_after()``) or raises a comms error;
- :class:`commander.poller.CommandSource` — ``get_commands(timeout)`` returns the
  commands of a 200, ``[]`` for a 408, and raises :class:`ServerUnreachable` on
  429/5xx and :class:`BadResponse` on anything unusable, as the real client does.

Every request is recorded (:class:`Request`) with its body parsed by the project's NDJSON
rules (:mod:`comms.ndjson`), so tests assert on events, not bytes.

What each request gets, first match wins:

1. the next answer scripted for its endpoint (:meth:`FakeServer.script`), else the
   standing answer (:meth:`FakeServer.always`); an answer is an :class:`Answer` (see
   :func:`reply`, :func:`timeout`, :func:`unreachable`, :func:`rejected`, :func:`fail`,
   :func:`commands`) or a function of the :class:`Request` returning one;
2. events: 413 when the body is over :attr:`FakeServer.max_body`; the status and message
   of :meth:`FakeServer.refuse` when an event of the body matches (the server's
   validation: 400 for the whole request);
3. the server's normal answer: stateless 204; stateful 200 with one result per event
   decided with the indexer's semantics (create of an existing document 409, update or
   delete of a missing one 404, an update merged into the document, a command result
   404 unless the server owns that command, :meth:`FakeServer.fail_items` for other
   failures; tests/fakes/test_server.py holds it to the reference server's
   ``refserver.documents.apply``); commands: what
   :meth:`FakeServer.queue_commands` queued, else 408 after :attr:`FakeServer.hold`.

A scripted 200 to a stateful request without a body of its own still gets the items.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from bus.indices import index_name
from comms.api import Reply
from comms.errors import BadResponse, ServerRejected, ServerUnreachable
from comms.ndjson import NEWLINE, event_spans, split_lines

#: the endpoints of the fake: the two event kinds and the long-poll
ENDPOINTS = ("stateless", "stateful", "commands")
#: where the fake "is", in the messages of the errors it raises
ORIGIN = "https://fake-server:27000"

#: an event as the tests see it: the header's fields, plus ``data`` when it has a data line
Event = dict[str, Any]
#: a test on one event
EventTest = Callable[[Event], bool]


@dataclass(frozen=True)
class Answer:
    """What the server does with one request: answer a status, or fail the way the client
    would report it (``error`` is raised instead of answering)."""

    status: int = 200
    #: the body as JSON (dumped compact); ``body`` wins
    json: Any = None
    body: bytes | None = None
    #: an error body ``{"message": message, "code": status}`` when neither is given
    message: str | None = None
    #: the ``Retry-After`` header (seconds, or an HTTP date)
    retry_after: float | str | None = None
    error: BaseException | None = None

    def payload(self) -> bytes | None:
        if self.body is not None:
            return self.body
        if self.json is not None:
            return orjson.dumps(self.json)
        if self.message is not None:
            return orjson.dumps({"message": self.message, "code": self.status})
        return None

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


#: a scripted answer: fixed, or decided when the request is seen
Scripted = Answer | Callable[["Request"], Answer]


def reply(
    status: int = 200,
    message: str | None = None,
    *,
    retry_after: float | str | None = None,
    json: Any = None,
    body: bytes | None = None,
) -> Answer:
    """An HTTP answer: ``reply(204)``, ``reply(503, "busy", retry_after=0.05)``."""
    return Answer(status, json=json, body=body, message=message, retry_after=retry_after)


def timeout() -> Answer:
    """No answer within the client's timeout (what ``comms.http.send`` raises)."""
    return fail(ServerUnreachable(f"{ORIGIN} did not answer in time: timed out"))


def unreachable(
    message: str = f"cannot reach {ORIGIN}: connection refused",
    *,
    retry_after: float | None = None,
) -> Answer:
    """The server cannot be reached (connection refused, reset, TLS)."""
    return fail(ServerUnreachable(message, retry_after=retry_after))


def rejected(status: int = 401, message: str = "Invalid key") -> Answer:
    """A final refusal of the agent's credentials (the token renewal was refused)."""
    return fail(ServerRejected(status, message, what="authentication"))


def fail(error: BaseException) -> Answer:
    """Raise ``error`` from the call instead of answering."""
    return Answer(error=error)


def commands(*items: dict[str, Any]) -> Answer:
    """A 200 to the long-poll carrying these commands."""
    return reply(200, json={"commands": list(items)})


def command(
    document_id: str,
    name: str = "myapp.scan",
    args: dict[str, Any] | None = None,
    timeout: float | None = 100,
) -> dict[str, Any]:
    """One element of the server's ``commands`` list (docs/protocol.md, "Commands")."""
    out: dict[str, Any] = {
        "document_id": document_id,
        "request_id": f"req-{document_id}",
        "order_id": f"order-{document_id}",
        "source": "Users/Services",
        "target": {"id": "agent-uuid", "type": "agent"},
        "action": {"name": name, "version": "5.0.0", "args": {} if args is None else args},
        "status": "sent",
    }
    if timeout is not None:
        out["timeout"] = timeout
    return out


def parse_body(body: bytes, stateful: bool) -> tuple[dict[str, Any], list[Event]]:
    """The agent line and the events of an events body (docs/protocol.md, "Events").

    Each event is its header's fields plus ``data`` when it has a data line. Raises
    ``ValueError`` for a body that is not NDJSON of objects.
    """
    lines = split_lines(body)
    agent = orjson.loads(lines[0])
    if not isinstance(agent, dict):
        raise ValueError("the agent line is not an object")
    events: list[Event] = []
    if len(lines) > 1:
        for span in event_spans(NEWLINE.join(lines[1:]), stateful):
            head_line, _, data_line = span.partition(NEWLINE)
            event = orjson.loads(head_line)
            if not isinstance(event, dict):
                raise ValueError("a header line is not an object")
            if data_line:
                event["data"] = orjson.loads(data_line)
            events.append(event)
    return agent, events


@dataclass
class Request:
    """One call the fake received, and what it did with it."""

    endpoint: str
    body: bytes
    timeout: float | None
    #: monotonic time of arrival
    at: float
    #: the agent line and the events of an events body
    agent: dict[str, Any] | None = None
    events: list[Event] = field(default_factory=list)
    #: why the body could not be parsed (then it was answered 400)
    parse_error: str | None = None
    #: the answer given (None while being decided)
    answer: Answer | None = None
    #: the per-item statuses of a stateful 200, in order
    items: list[int] = field(default_factory=list)
    #: the commands a 200 to the long-poll carried
    commands: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> int | None:
        """The HTTP status answered; None when the call raised."""
        if self.answer is None or self.answer.error is not None:
            return None
        return self.answer.status

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def ids(self) -> list[str]:
        """The document ids of the events (stateful)."""
        return [str(e.get("id")) for e in self.events]

    def operations(self) -> list[tuple[str, str]]:
        """(operation, id) of every stateful event, in order."""
        return [(str(e.get("operation")), str(e.get("id"))) for e in self.events]


class FakeServer:
    """The server's comms API, in memory; thread-safe (senders post from several threads)."""

    def __init__(self, *, hold: float = 0.0) -> None:
        self._cond = threading.Condition()
        self.requests: list[Request] = []
        #: the indexer: (index, id) → the document
        self.documents: dict[tuple[str, str], Any] = {}
        #: command documents the server owns (a result for another one is an item 404)
        self.known_commands: set[str] = set()
        #: bodies larger than this are answered 413
        self.max_body: int | None = None
        #: how long a long-poll waits for queued commands before its 408 (seconds)
        self.hold = hold
        self._script: dict[str, deque[Scripted]] = {e: deque() for e in ENDPOINTS}
        self._always: dict[str, Scripted | None] = dict.fromkeys(ENDPOINTS)
        self._refusals: list[tuple[EventTest, int, str]] = []
        self._item_failures: list[tuple[EventTest, int, str]] = []
        self._queued: deque[list[dict[str, Any]]] = deque()

    # -- scripting ---------------------------------------------------------------------
    def script(self, endpoint: str, *answers: Scripted) -> None:
        """The next requests to ``endpoint`` get these answers, one each, in order."""
        self._check(endpoint)
        with self._cond:
            self._script[endpoint].extend(answers)

    def always(self, endpoint: str, answer: Scripted | None) -> None:
        """Every request to ``endpoint`` (once the script is used up) gets ``answer``;
        None goes back to the normal answers."""
        self._check(endpoint)
        with self._cond:
            self._always[endpoint] = answer

    def refuse(self, test: EventTest, *, status: int = 400, message: str = "body invalid") -> None:
        """Answer ``status`` with ``message`` to every events request holding an event
        that passes ``test`` (the server's validation refuses the whole request)."""
        with self._cond:
            self._refusals.append((test, status, message))

    def fail_items(
        self, test: EventTest, *, status: int = 400, result: str = "mapper_parsing_exception"
    ) -> None:
        """Fail, in the 200 to a stateful request, every item whose event passes ``test``."""
        with self._cond:
            self._item_failures.append((test, status, result))

    def queue_commands(self, *items: dict[str, Any]) -> None:
        """The next long-poll (or the one waiting) answers 200 with these commands; the
        server owns their documents from now on."""
        with self._cond:
            self._queued.append(list(items))
            self.known_commands.update(str(c.get("document_id")) for c in items)
            self._cond.notify_all()

    def unused(self) -> dict[str, int]:
        """Scripted answers no request has taken, by endpoint (those with any)."""
        with self._cond:
            return {e: len(q) for e, q in self._script.items() if q}

    # -- the protocols -----------------------------------------------------------------
    def post_events(self, kind: Any, body: bytes, timeout: float | None = None) -> Reply:
        """``POST /events/<kind>``: a reply whatever the status, or a comms error."""
        if kind not in ("stateless", "stateful"):
            raise ValueError(f"kind must be 'stateless' or 'stateful', not {kind!r}")
        request = Request(kind, bytes(body), timeout, time.monotonic())
        try:
            request.agent, request.events = parse_body(request.body, kind == "stateful")
        except (ValueError, IndexError) as exc:
            request.parse_error = str(exc)
        with self._cond:
            self.requests.append(request)
            answer = self._scripted(request) or self._events_answer(request)
            request.answer = answer
            if answer.error is not None:
                raise answer.error
            payload = answer.payload()
            if kind == "stateful" and answer.status == 200 and payload is None:
                payload = self._apply(request)
            self._cond.notify_all()
        return Reply(answer.status, payload or b"", answer.headers())

    def get_commands(self, timeout: float) -> list[dict[str, Any]]:
        """``GET /commands``: the commands of a 200, ``[]`` for a 408 (the client's rules)."""
        request = Request("commands", b"", timeout, time.monotonic())
        with self._cond:
            self.requests.append(request)
            answer = self._scripted(request)
            if answer is None:
                if not self._queued and self.hold > 0:
                    self._cond.wait_for(lambda: bool(self._queued), min(timeout, self.hold))
                answer = commands(*self._queued.popleft()) if self._queued else reply(408)
            request.answer = answer
            self._cond.notify_all()
        if answer.error is not None:
            raise answer.error
        got = Reply(answer.status, answer.payload() or b"", answer.headers())
        if got.status == 408:
            return []
        if got.status != 200:
            if got.status == 429 or got.status >= 500:
                raise ServerUnreachable(
                    f"the server could not serve commands now: {got.message()} (HTTP {got.status})",
                    retry_after=got.retry_after(),
                )
            raise BadResponse(
                f"unexpected answer for commands: {got.message()} (HTTP {got.status})",
                status=got.status,
            )
        doc = got.json()
        items = doc.get("commands") if isinstance(doc, dict) else None
        if not isinstance(items, list) or not all(isinstance(c, dict) for c in items):
            raise BadResponse("the commands answer has no list of commands", status=200)
        request.commands = items
        return items

    # -- what happened -----------------------------------------------------------------
    def requests_to(self, endpoint: str) -> list[Request]:
        self._check(endpoint)
        with self._cond:
            return [r for r in self.requests if r.endpoint == endpoint]

    def statuses(self, endpoint: str) -> list[int | None]:
        """The status of every request to ``endpoint``, in order (None: it raised)."""
        return [r.status for r in self.requests_to(endpoint)]

    def delivered(self, endpoint: str) -> list[Event]:
        """The events the server took, in order of arrival: those of 2xx requests, less
        the stateful items that failed (a 409 to a create, a 404 to a delete included)."""
        out: list[Event] = []
        for r in self.requests_to(endpoint):
            if not r.ok:
                continue
            if r.items:
                out.extend(e for e, s in zip(r.events, r.items, strict=False) if s < 400)
            else:
                out.extend(r.events)
        return out

    def wait_requests(self, endpoint: str, n: int, timeout: float = 10.0) -> list[Request]:
        """Block until ``endpoint`` got at least ``n`` requests (for threaded tests)."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: sum(r.endpoint == endpoint for r in self.requests) >= n, timeout
            ):
                raise AssertionError(f"{endpoint}: fewer than {n} requests within {timeout}s")
        return self.requests_to(endpoint)

    # -- internals ---------------------------------------------------------------------
    @staticmethod
    def _check(endpoint: str) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}, not {endpoint!r}")

    def _scripted(self, request: Request) -> Answer | None:
        queue = self._script[request.endpoint]
        chosen = queue.popleft() if queue else self._always[request.endpoint]
        if chosen is None:
            return None
        return chosen(request) if callable(chosen) else chosen

    def _events_answer(self, request: Request) -> Answer:
        if request.parse_error is not None:
            return reply(400, f"body invalid NDJSON: {request.parse_error}")
        if self.max_body is not None and len(request.body) > self.max_body:
            return reply(413, "Request Entity Too Large")
        for test, status, message in self._refusals:
            if any(test(event) for event in request.events):
                return reply(status, message)
        return reply(204) if request.endpoint == "stateless" else reply(200)

    def _apply(self, request: Request) -> bytes:
        """The items of a stateful 200, each decided in order as the indexer does."""
        results = []
        for event in request.events:
            module, doc = str(event.get("module")), str(event.get("id"))
            collector = event.get("collector")
            index = index_name(module, collector if isinstance(collector, str) else None)
            status, result = self._item(event, (index, doc))
            request.items.append(status)
            results.append({"index": index, "id": doc, "result": result, "status": status})
        return orjson.dumps({"results": results})

    def _item(self, event: Event, key: tuple[str, str]) -> tuple[int, str]:
        for test, status, result in self._item_failures:
            if test(event):
                return status, result
        operation = event.get("operation")
        if event.get("module") == "command":
            if key[1] not in self.known_commands:
                return 404, "document_missing_exception"
            self.documents[key] = event.get("data")
            return 200, "updated"
        if operation == "delete":
            if key not in self.documents:
                return 404, "not_found"
            del self.documents[key]
            return 200, "deleted"
        if operation == "create":
            if key in self.documents:
                return 409, "version_conflict_engine_exception"
            self.documents[key] = event.get("data")
            return 201, "created"
        if key not in self.documents:
            return 404, "document_missing_exception"
        self.documents[key] = merge(self.documents[key], event.get("data"))
        return 200, "updated"


def merge(stored: Any, update: Any) -> Any:
    """An update as the indexer applies ``{"doc": update}``: objects merge recursively,
    any other value (a list, a null) replaces the stored one."""
    if not isinstance(stored, dict) or not isinstance(update, dict):
        return update
    merged = dict(stored)
    for name, value in update.items():
        old = merged.get(name)
        merged[name] = (
            merge(old, value) if isinstance(value, dict) and isinstance(old, dict) else value
        )
    return merged


def with_id(*ids: str) -> EventTest:
    """A test for :meth:`FakeServer.refuse`/:meth:`FakeServer.fail_items`: the event's id."""
    wanted = set(ids)
    return lambda event: event.get("id") in wanted


def with_data(**fields: Any) -> EventTest:
    """A test on the top-level fields of an event's data: ``with_data(seq=7)``."""
    return lambda event: all(
        isinstance(event.get("data"), dict) and event["data"].get(k) == v for k, v in fields.items()
    )
