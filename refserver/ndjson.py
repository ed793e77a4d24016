"""The events body parser: NDJSON read line by line as the bytes arrive.

The body is the agent metadata line, then header/data line pairs (docs/protocol.md,
Events). A ``delete`` header on the stateful endpoint has no data line. Every line must be
one JSON object, no line may be empty, and there is no trailing newline. Any violation
raises :class:`~refserver.errors.HTTPError` 400 with a ``"<field path> <reason>"`` message,
the shape of the real server's validation errors.

Stateless bodies are read the way the server's engine reads them: a header is recognised
by its **content**, not its position. Line 2 must be a header; after it, any line with
string ``module`` and ``collector`` fields is a header for the lines after it (one header
may cover several data lines), every other line is an event of the current header. A data
line (the line right after a header, where a header/data pair puts its data) that has
those fields is therefore taken for a header and its event is lost without an error, as on
the real server; :attr:`BodyParser.swallowed` counts those lines so tests can see the leak.

The parser is fed chunks (``feed``) and keeps only the unfinished last line, so a body is
never held whole; what it keeps are the rows to store for this one request.
:meth:`BodyParser.line` and :meth:`BodyParser.end` let another reader
(:mod:`refserver.chunks`) split the body its own way.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from refserver.documents import StatefulRow
from refserver.errors import HTTPError

STATEFUL_MODULES = ("fim", "inventory", "sca", "vulnerability", "command")
INVENTORY_COLLECTORS = (
    "hardware",
    "hotfixes",
    "packages",
    "networks",
    "system",
    "ports",
    "processes",
)
OPERATIONS = ("create", "update", "delete")

Kind = Literal["stateless", "stateful"]


def _bad(message: str, line: int) -> HTTPError:
    return HTTPError(400, f"{message} (line {line})")


class BodyParser:
    """Parses one events request body of ``kind``; feed chunks, then call :meth:`finish`."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.lines = 0
        self.agent: dict[str, Any] | None = None
        self.stateless: list[tuple[str, str, str, str]] = []
        self.stateful: list[StatefulRow] = []
        #: stateless data lines the engine takes for headers (their events are lost)
        self.swallowed = 0
        self._tail = b""
        # the header waiting for its data line: (raw line, parsed header)
        self._pending: tuple[str, dict[str, Any]] | None = None
        # stateless: the header that covers the next data lines (raw line, parsed header)
        self._header: tuple[str, dict[str, Any]] | None = None

    # -- input ------------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        buffer = self._tail + chunk
        *complete, self._tail = buffer.split(b"\n")
        for line in complete:
            self.line(line)

    def finish(self) -> None:
        """Process the last line and check the body as a whole."""
        if self.lines == 0 and not self._tail:
            raise HTTPError(400, "body must contain the agent metadata, headers and events")
        # A trailing newline leaves an empty last line: rejected like any empty line.
        self.line(self._tail)
        self._tail = b""
        self.end()

    def end(self) -> None:
        """Check the body as a whole once its last line went through :meth:`line`."""
        if self.lines == 0:
            raise HTTPError(400, "body must contain the agent metadata, headers and events")
        if self._pending is not None:
            raise _bad("data line missing after header", self.lines)
        if self.kind == "stateless" and self.lines < 3:
            raise HTTPError(
                400, "body must contain the agent metadata, a header and an event (3 lines or more)"
            )
        if self.kind == "stateful" and self.lines < 2:
            raise HTTPError(400, "body must contain the agent metadata, headers and events")

    # -- lines ------------------------------------------------------------------------------
    def line(self, raw: bytes) -> None:
        """Read one line (without its newline)."""
        self.lines += 1
        n = self.lines
        if not raw.strip():
            raise _bad("line is empty", n)
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _bad("line is not valid JSON", n)
        if not isinstance(value, dict):
            raise _bad("line must be a JSON object", n)
        text = raw.decode()  # orjson accepted it, so it is valid UTF-8
        if n == 1:
            self.agent = _check_agent(value)
        elif self.kind == "stateless":
            self._stateless(text, value, n)
        elif self._pending is not None:
            head_text, head = self._pending
            self._pending = None
            self._data(head_text, head, text, value, n)
        else:
            head = _check_stateful_header(value, n)
            if head["operation"] == "delete":
                self.stateful.append(_stateful_row(text, head, None, None, None))
            else:
                self._pending = (text, head)

    def _stateless(self, text: str, value: dict[str, Any], n: int) -> None:
        # ``_pending`` is set while the line before was a header in a pair's header place:
        # this line is then in a data place. A line in a data place that has the header
        # fields is swallowed; a data line in a header place is just one more event.
        in_data_place = self._pending is not None
        self._pending = None
        if n == 2:
            self._header = self._pending = (text, _check_stateless_header(value, n))
        elif _is_stateless_header(value):
            self._header = (text, value)
            if in_data_place:
                self.swallowed += 1  # a pair's data line, read as a header: its event is lost
            else:
                self._pending = self._header
        else:
            assert self._header is not None  # line 2 is always a header
            head_text, head = self._header
            self.stateless.append((head["module"], head["collector"], head_text, text))

    def _data(self, head_text: str, head: dict[str, Any], text: str, data: dict, n: int) -> None:
        result = _check_command_data(data, n) if head["module"] == "command" else None
        self.stateful.append(_stateful_row(head_text, head, text, data, result))

    @property
    def groups(self) -> list[str] | None:
        if self.agent is None:
            return None
        return list(self.agent["groups"])


def _stateful_row(
    head_text: str,
    head: dict[str, Any],
    text: str | None,
    value: dict[str, Any] | None,
    result: dict[str, Any] | None,
) -> StatefulRow:
    return StatefulRow(
        header=head_text,
        data=text,
        value=value,
        doc_id=head["id"],
        module=head["module"],
        collector=head.get("collector"),
        operation=head["operation"],
        result=result,
    )


def _field(obj: dict[str, Any], path: str, key: str, kind: type, n: int, what: str) -> Any:
    if key not in obj:
        raise _bad(f"{path}{key} field required", n)
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _bad(f"{path}{key} input should be a valid {what}", n)
    return value


def _check_agent(line: dict[str, Any]) -> dict[str, Any]:
    agent = _field(line, "", "agent", dict, 1, "dictionary")
    groups = _field(agent, "agent.", "groups", list, 1, "list")
    for i, group in enumerate(groups):
        if not isinstance(group, str):
            raise _bad(f"agent.groups.{i} input should be a valid string", 1)
    _field(agent, "agent.", "host", dict, 1, "dictionary")
    return agent


def _is_stateless_header(line: dict[str, Any]) -> bool:
    """What makes the engine take a line for a header: string module and collector."""
    return isinstance(line.get("module"), str) and isinstance(line.get("collector"), str)


def _check_stateless_header(head: dict[str, Any], n: int) -> dict[str, Any]:
    _field(head, "header.", "module", str, n, "string")
    _field(head, "header.", "collector", str, n, "string")
    return head


_MODULES = frozenset(STATEFUL_MODULES)
_COLLECTORS = frozenset(INVENTORY_COLLECTORS)
_OPERATIONS = frozenset(OPERATIONS)


def _check_stateful_header(head: dict[str, Any], n: int) -> dict[str, Any]:
    # Fast path for the well-formed header (nearly all of them); the checks below it only
    # run to name the problem.
    doc_id, module = head.get("id"), head.get("module")
    operation, collector = head.get("operation"), head.get("collector")
    if (
        type(doc_id) is str
        and doc_id
        and type(operation) is str
        and operation in _OPERATIONS
        and type(module) is str
        and module in _MODULES
        and (
            (type(collector) is str and (module != "inventory" or collector in _COLLECTORS))
            or (module == "command" and "collector" not in head)
        )
    ):
        return head
    return _explain_stateful_header(head, n)


def _explain_stateful_header(head: dict[str, Any], n: int) -> dict[str, Any]:
    doc_id = _field(head, "header.", "id", str, n, "string")
    if not doc_id:
        raise _bad("header.id string should have at least 1 character", n)
    module = _field(head, "header.", "module", str, n, "string")
    if module not in STATEFUL_MODULES:
        allowed = ", ".join(f"'{m}'" for m in STATEFUL_MODULES)
        raise _bad(f"header.module input should be {allowed}", n)
    if module != "command" or "collector" in head:
        collector = _field(head, "header.", "collector", str, n, "string")
        if module == "inventory" and collector not in INVENTORY_COLLECTORS:
            allowed = ", ".join(f"'{c}'" for c in INVENTORY_COLLECTORS)
            raise _bad(f"header.collector input should be {allowed}", n)
    operation = _field(head, "header.", "operation", str, n, "string")
    if operation not in OPERATIONS:
        raise _bad("header.operation input should be 'create', 'update' or 'delete'", n)
    return head


def _check_command_data(data: dict[str, Any], n: int) -> dict[str, Any]:
    command = _field(data, "data.", "command", dict, n, "dictionary")
    result = _field(command, "data.command.", "result", dict, n, "dictionary")
    _field(result, "data.command.result.", "code", int, n, "integer")
    _field(result, "data.command.result.", "message", str, n, "string")
    return result
