"""The body parser alone: chunk boundaries never change the result."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refserver.errors import HTTPError
from refserver.ndjson import BodyParser
from tests.refserver.helpers import agent_line, dumps, stateful_header, stateless_pair

BODY = "\n".join(
    [agent_line("a1", ["g"]), *stateless_pair(n=1), *stateless_pair("m", "c", n=2)]
).encode()
STATEFUL = "\n".join(
    [
        agent_line("a1", []),
        stateful_header("d1", "fim", "file", "create"),
        dumps({"x": "é"}),
        stateful_header("d1", "fim", "file", "delete"),
        stateful_header("c", "command", None, "update"),
        dumps({"command": {"result": {"code": 0, "message": "ok"}}}),
    ]
).encode()


def _parse(kind: str, body: bytes, cuts: list[int]) -> BodyParser:
    parser = BodyParser(kind)  # type: ignore[arg-type]
    start = 0
    for cut in sorted(set(cuts)):
        parser.feed(body[start:cut])
        start = cut
    parser.feed(body[start:])
    parser.finish()
    return parser


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(BODY)), max_size=12))
def test_stateless_parse_is_independent_of_chunking(cuts: list[int]) -> None:
    parser = _parse("stateless", BODY, cuts)
    assert parser.groups == ["g"]
    assert [(m, c) for m, c, _h, _d in parser.stateless] == [("logcollector", "file"), ("m", "c")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STATEFUL)), max_size=12))
def test_stateful_parse_is_independent_of_chunking(cuts: list[int]) -> None:
    rows = _parse("stateful", STATEFUL, cuts).stateful
    assert [(r.doc_id, r.operation, r.data is None) for r in rows] == [
        ("d1", "create", False),
        ("d1", "delete", True),
        ("c", "update", False),
    ]
    assert rows[0].data == '{"x":"é"}'
    assert rows[2].result == {"code": 0, "message": "ok"} and rows[2].collector is None


def test_invalid_utf8_is_refused() -> None:
    body = BODY.replace(b"line 1", b"line \xff")
    with pytest.raises(HTTPError) as info:
        _parse("stateless", body, [])
    assert info.value.status == 400 and "not valid JSON" in info.value.message
