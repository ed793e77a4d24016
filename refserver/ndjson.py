"""The events body parser: NDJSON read line by line as the bytes arrive.

The body is the agent metadata line, then header/data line pairs (PROTOCOL.md, Events). A
``delete`` header on the stateful endpoint has no data line. Every line must be one JSON
object, no line may be empty, and there is no trailing newline. Any violation raises
:class:`~refserver.errors.HTTPError` 400 with a ``"<field path> <reason>"`` message, the shape
of the real server's validation errors.

The parser is fed chunks (``feed``) and keeps only the unfinished last line, so a body is
never held whole; what it keeps are the rows to store for this one request.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from refserver.errors import HTTPError
from refserver.store import StatefulRow

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
        self._tail = b""
        # the header waiting for its data line: (raw line, parsed header)
        self._pending: tuple[str, dict[str, Any]] | None = None

    # -- input ------------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        buffer = self._tail + chunk
        *complete, self._tail = buffer.split(b"\n")
        for line in complete:
            self._line(line)

    def finish(self) -> None:
        """Process the last line and check the body as a whole."""
        if self.lines == 0 and not self._tail:
            raise HTTPError(400, "body must contain the agent metadata, headers and events")
        # A trailing newline leaves an empty last line: rejected like any empty line.
        self._line(self._tail)
        self._tail = b""
        if self._pending is not None:
            raise _bad("data line missing after header", self.lines)
        if self.kind == "stateless" and self.lines < 3:
            raise HTTPError(
                400, "body must contain the agent metadata, a header and an event (3 lines or more)"
            )
        if self.kind == "stateful" and self.lines < 2:
            raise HTTPError(400, "body must contain the agent metadata, headers and events")

    # -- lines ------------------------------------------------------------------------------
    def _line(self, raw: bytes) -> None:
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
        elif self._pending is not None:
            head_text, head = self._pending
            self._pending = None
            self._data(head_text, head, text, value, n)
        elif self.kind == "stateless":
            self._pending = (text, _check_stateless_header(value, n))
        else:
            head = _check_stateful_header(value, n)
            if head["operation"] == "delete":
                self.stateful.append(_stateful_row(text, head, None, None))
            else:
                self._pending = (text, head)

    def _data(self, head_text: str, head: dict[str, Any], text: str, data: dict, n: int) -> None:
        if self.kind == "stateless":
            self.stateless.append((head["module"], head["collector"], head_text, text))
            return
        result = _check_command_data(data, n) if head["module"] == "command" else None
        self.stateful.append(_stateful_row(head_text, head, text, result))

    @property
    def groups(self) -> list[str] | None:
        if self.agent is None:
            return None
        return list(self.agent["groups"])


def _stateful_row(
    head_text: str, head: dict[str, Any], text: str | None, result: dict[str, Any] | None
) -> StatefulRow:
    return StatefulRow(
        header=head_text,
        data=text,
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
