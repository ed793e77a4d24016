"""The body parsers alone: stream chunk boundaries never change the result; the stateless
engine's reading; the per-piece reading of ``--stateful-chunk``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refserver.chunks import PieceReader, head_size
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


# -- the stateless engine's reading ------------------------------------------------------------
def _stateless(*lines: str) -> BodyParser:
    return _parse("stateless", "\n".join([agent_line("a1", []), *lines]).encode(), [])


def test_a_header_covers_every_data_line_until_the_next_header() -> None:
    head, other = dumps({"module": "m", "collector": "c"}), dumps({"module": "n", "collector": "d"})
    parser = _stateless(head, dumps({"a": 1}), dumps({"b": 2}), other, dumps({"c": 3}))
    assert [(m, d) for m, _c, _h, d in parser.stateless] == [
        ("m", '{"a":1}'),
        ("m", '{"b":2}'),
        ("n", '{"c":3}'),
    ]
    assert parser.swallowed == 0


def test_a_data_line_that_looks_like_a_header_is_swallowed() -> None:
    head = dumps({"module": "m", "collector": "c"})
    lookalike = dumps({"module": "audit", "collector": "auditd", "event": {"original": "x"}})
    parser = _stateless(head, lookalike, head, dumps({"a": 1}))
    assert [d for _m, _c, _h, d in parser.stateless] == ['{"a":1}']
    assert parser.swallowed == 1
    # at the end of the body too: the event is lost, the body is not refused
    parser = _stateless(head, dumps({"a": 1}), head, lookalike)
    assert len(parser.stateless) == 1 and parser.swallowed == 1


def test_line_2_must_still_be_a_header_and_a_pair_needs_its_data() -> None:
    with pytest.raises(HTTPError, match=r"header.module field required \(line 2\)"):
        _stateless(dumps({"a": 1}), dumps({"b": 2}))
    head = dumps({"module": "m", "collector": "c"})
    with pytest.raises(HTTPError, match=r"data line missing after header \(line 4\)"):
        _stateless(head, dumps({"a": 1}), head)


# -- --stateful-chunk: per-piece reading --------------------------------------------------------
def _pieces(body: bytes, size: int, head: int, cuts: list[int]) -> BodyParser:
    parser = BodyParser("stateful")
    reader = PieceReader(parser, size, head)
    start = 0
    for cut in sorted(set(cuts)):
        reader.feed(body[start:cut])
        start = cut
    reader.feed(body[start:])
    reader.finish()
    return parser


def _outcome(body: bytes, size: int, head: int, cuts: list[int]) -> object:
    try:
        return [(r.doc_id, r.operation) for r in _pieces(body, size, head, cuts).stateful]
    except HTTPError as exc:
        return (exc.status, exc.message)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=len(STATEFUL) + 50),
    st.integers(min_value=0, max_value=400),
    st.lists(st.integers(min_value=0, max_value=len(STATEFUL)), max_size=8),
)
def test_pieces_depend_on_n_and_the_head_not_on_how_the_bytes_arrive(
    size: int, head: int, cuts: list[int]
) -> None:
    assert _outcome(STATEFUL, size, head, cuts) == _outcome(STATEFUL, size, head, [])


def test_one_piece_holding_the_whole_request_parses_like_the_stream() -> None:
    rows = _pieces(STATEFUL, 16384, 300, []).stateful
    assert [(r.doc_id, r.operation) for r in rows] == [
        ("d1", "create"),
        ("d1", "delete"),
        ("c", "update"),
    ]


def test_a_piece_of_one_line_is_refused_and_a_cut_line_is_misread() -> None:
    lines = STATEFUL.split(b"\n")
    # the first piece ends exactly after line 5: the second holds line 6 alone
    first = sum(len(line) + 1 for line in lines[:5])
    with pytest.raises(HTTPError, match="Invalid stateful events request body") as info:
        _pieces(STATEFUL, first + 100, 100, [])
    assert info.value.status == 400 and "(piece 2, body bytes" in info.value.message
    # a cut inside line 2: its first half is not JSON
    with pytest.raises(HTTPError, match=r"line is not valid JSON \(line 2\)"):
        _pieces(STATEFUL, len(lines[0]) + 10 + 100, 100, [])


def test_head_size_is_the_request_line_the_headers_and_the_blank_line() -> None:
    headers = [(b"host", b"h:1"), (b"content-length", b"12")]
    assert head_size("POST", "/p", headers) == len(
        b"POST /p HTTP/1.1\r\nhost: h:1\r\ncontent-length: 12\r\n\r\n"
    )
