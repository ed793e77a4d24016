"""``--stateful-chunk N``: stateful bodies parsed per N-byte piece of the request, the way
the 6.0.0 comms API parses each receive chunk (docs/protocol.md §2, Events).

The requests are sent with http.client and exactly the headers listed here, so the size of
the request head, and with it where every cut falls, is known to the byte.
"""

from __future__ import annotations

import http.client
import json

import pytest

from refserver.chunks import head_size
from refserver.errors import INVALID_STATEFUL_MESSAGE
from tests.refserver.helpers import Agent, dumps, enroll, error_of, stateful_header

PATH = "/api/v1/events/stateful"
TLS_RECORD = 16384


def _headers(agent: Agent, port: int, length: int) -> list[tuple[str, str]]:
    return [
        ("Host", f"127.0.0.1:{port}"),
        ("Authorization", f"Bearer {agent.token}"),
        ("Content-Type", "application/json"),
        ("Content-Length", str(length)),
    ]


def _head(agent: Agent, port: int, length: int) -> int:
    headers = [(n.encode(), v.encode()) for n, v in _headers(agent, port, length)]
    return head_size("POST", PATH, headers)


def _post(agent: Agent, port: int, body: bytes) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("POST", PATH, skip_host=True, skip_accept_encoding=True)
        for name, value in _headers(agent, port, len(body)):
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _event(agent: Agent, n: int, pad: int = 0) -> list[str]:
    doc = f"p{n}-{agent.id}"
    data = {"package": {"name": f"pkg-{n:05d}", "version": "1.0", "description": "x" * pad}}
    return [stateful_header(doc, "inventory", "packages", "create"), dumps(data)]


def _body(agent: Agent, events: list[list[str]]) -> bytes:
    return "\n".join([agent.metadata(), *(line for e in events for line in e)]).encode()


def _padded(agent: Agent, port: int, lines_before_cut: int, offset: int) -> bytes:
    """A body of five events whose first piece ends ``offset`` bytes after the newline that
    ends line ``lines_before_cut`` (0: exactly at a line's end; <0: inside that line). Line 3,
    the first event's data, is padded to move the cut."""
    assert lines_before_cut >= 3
    pad = 0
    for _ in range(5):  # the pad moves the cut 1:1, unless Content-Length grows a digit
        body = _body(agent, [_event(agent, 0, pad), *(_event(agent, n) for n in range(1, 5))])
        prefix = sum(len(line) + 1 for line in body.split(b"\n")[:lines_before_cut])
        miss = TLS_RECORD - (_head(agent, port, len(body)) + prefix + offset)
        if miss == 0:
            return body
        pad += miss
    raise AssertionError("no padding puts the cut there")


@pytest.fixture
def chunked(refserver_factory):
    return refserver_factory(stateful_chunk=TLS_RECORD)


def test_a_60kb_stateful_request_fails_when_read_per_16k_piece(chunked, refserver) -> None:
    agent = enroll(chunked.url)
    events = [_event(agent, n, pad=60) for n in range(250)]
    body = _body(agent, events)
    assert 55_000 < len(body) < 70_000
    head = _head(agent, chunked.port, len(body))
    # where the cuts fall: at least one inside a line (so the request is misread)
    cuts = range(TLS_RECORD - head, len(body), TLS_RECORD)
    assert any(body[cut - 1 : cut] != b"\n" for cut in cuts)
    status, answer = _post(agent, chunked.port, body)
    assert status == 400, answer
    assert chunked.count_events(agent=agent.id) == 0
    assert chunked.documents("wazuh-states-inventory-packages") == []
    # the same request, read as one stream (no --stateful-chunk), is fine
    other = enroll(refserver.url)
    body = _body(other, [_event(other, n, pad=60) for n in range(250)])
    status, answer = _post(other, refserver.port, body)
    assert status == 200 and {i["status"] for i in answer["results"]} == {201}


def test_a_request_whose_head_and_body_fit_16k_passes(chunked) -> None:
    agent = enroll(chunked.url)
    events = [_event(agent, n, pad=60) for n in range(60)]
    body = _body(agent, events)
    assert 14_000 < _head(agent, chunked.port, len(body)) + len(body) <= TLS_RECORD
    status, answer = _post(agent, chunked.port, body)
    assert status == 200 and len(answer["results"]) == 60
    assert {i["status"] for i in answer["results"]} == {201}
    assert chunked.count_events(agent=agent.id) == 60
    # the same through requests, whatever headers it adds
    more = [_event(agent, n, pad=60) for n in range(100, 160)]
    r = agent.post("stateful", [line for e in more for line in e])
    assert r.status_code == 200 and {i["status"] for i in r.json()["results"]} == {201}


def test_a_cut_at_a_lines_end_is_harmless(chunked) -> None:
    agent = enroll(chunked.url)
    body = _padded(agent, chunked.port, lines_before_cut=3, offset=0)
    assert len(body) > TLS_RECORD  # two pieces; the second starts with event 1's header
    status, answer = _post(agent, chunked.port, body)
    assert status == 200 and [i["status"] for i in answer["results"]] == [201] * 5


def test_a_cut_just_before_a_newline_is_harmless(chunked) -> None:
    # the second piece starts with "\n": an empty part, skipped as the real server does
    agent = enroll(chunked.url)
    body = _padded(agent, chunked.port, lines_before_cut=3, offset=-1)
    status, answer = _post(agent, chunked.port, body)
    assert status == 200 and [i["status"] for i in answer["results"]] == [201] * 5


def test_a_line_cut_across_two_pieces_is_refused(chunked) -> None:
    agent = enroll(chunked.url)
    body = _padded(agent, chunked.port, lines_before_cut=3, offset=-20)  # inside line 3
    status, answer = _post(agent, chunked.port, body)
    assert status == 400
    assert answer == {"message": "line is not valid JSON (line 3)", "code": 400}
    assert chunked.count_events(agent=agent.id) == 0


def test_a_piece_with_a_single_line_is_refused_with_the_real_message(chunked) -> None:
    agent = enroll(chunked.url)
    # the first piece ends after line 10's newline: the second holds line 11 alone
    body = _padded(agent, chunked.port, lines_before_cut=10, offset=0)
    assert body.count(b"\n") == 10
    status, answer = _post(agent, chunked.port, body)
    assert status == 400
    assert answer["code"] == 400
    assert answer["message"].startswith(INVALID_STATEFUL_MESSAGE + " (piece 2, body bytes ")
    assert chunked.count_events(agent=agent.id) == 0


def test_our_own_rules_still_hold_in_this_mode(chunked) -> None:
    agent = enroll(chunked.url)
    lines = _event(agent, 1)
    r = agent.post("stateful", [*lines, ""])  # a trailing newline
    assert error_of(r) == (400, "line is empty (line 4)", 400)
    r = agent.post("stateful", [lines[0], "", lines[1]])
    assert error_of(r) == (400, "line is empty (line 3)", 400)


def test_stateless_requests_are_not_cut(chunked) -> None:
    from tests.refserver.helpers import stateless_pair

    agent = enroll(chunked.url)
    lines: list[str] = []
    for n in range(1000):
        lines += stateless_pair(n=n)
    assert agent.post("stateless", lines).status_code == 204
    assert chunked.count_events(agent=agent.id) == 1000


def test_stateful_chunk_must_be_positive(tmp_path) -> None:
    from tests.refserver.test_cli import agentbus

    out = agentbus("--data-dir", str(tmp_path), "--stateful-chunk", "0")
    assert out.returncode == 2 and "--stateful-chunk must be at least 1" in out.stderr
