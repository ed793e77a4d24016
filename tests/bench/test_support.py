"""The benchmark support pieces (bench/): events, sink, discovery, and the syslog-ng peer."""

from __future__ import annotations

import json
import os
import time

import jwt
import pytest
import requests

from bench import events, peer_syslog_ng, run_all, runner
from bench.sink import AUTH, STATEFUL, STATELESS, Sink, agent_line

pytestmark = pytest.mark.bench
HEADER = b'{"module":"logcollector","collector":"file"}'
BEARER = {"Authorization": "Bearer x", "Content-Type": "application/json"}


def body_of(seqs: range, sent: float | None = None) -> bytes:
    pairs = (
        HEADER + b"\n" + json.dumps(events.event_data(s, sent), separators=(",", ":")).encode()
        for s in seqs
    )
    return agent_line() + b"\n" + b"\n".join(pairs)


def test_events_have_fixed_sizes_and_are_deterministic() -> None:
    for seq in (0, 1, 999, 123_456, 9_999_999):
        assert events.data_line_bytes(events.event_data(seq)) == events.EVENT_BYTES
        assert events.data_line_bytes(events.event_data(seq, time.time())) == events.EVENT_BYTES
        assert len(events.syslog_line(seq)) == events.LINE_BYTES
    assert events.bus_events(3) == events.bus_events(3)
    assert len(events.syslog_payload(10)) == events.total_line_bytes(10)
    assert [len(b) for b in events.iter_bus_batches(1200, batch=500)] == [500, 500, 200]


@pytest.fixture
def sink():
    with Sink(latency=True) as s:
        yield s


def test_sink_counts_stateless_events_and_checks_the_body(sink: Sink) -> None:
    with requests.Session() as http:
        assert (
            http.post(sink.url + STATELESS, data=body_of(range(10)), headers=BEARER).status_code
            == 204
        )
        assert http.post(sink.url + STATELESS, data=body_of(range(10, 15))).status_code == 403
        bad = body_of(range(3)) + b"\n"
        assert http.post(sink.url + STATELESS, data=bad, headers=BEARER).status_code == 400
    stats = sink.stats()
    assert (stats["events"], stats["requests"], stats["bad_requests"]) == (10, 1, 1)
    assert stats["unauthorized"] == 1 and stats["distinct"] == 10
    assert stats["first_ts"] <= stats["last_ts"]


def test_sink_hands_out_900_second_tokens_and_answers_stateful(sink: Sink) -> None:
    token = requests.post(sink.url + AUTH, json={"uuid": "u1", "key": "k" * 32}).json()["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 900 and claims["uuid"] == "u1"
    body = agent_line() + (
        b'\n{"id":"a","module":"fim","collector":"file","operation":"create"}\n{"x":1}'
        b'\n{"id":"b","module":"fim","collector":"file","operation":"delete"}'
    )
    reply = requests.post(sink.url + STATEFUL, data=body, headers=BEARER)
    assert reply.status_code == 200
    assert [r["id"] for r in reply.json()["results"]] == ["a", "b"]


def test_sink_records_latency_and_fails_on_request(sink: Sink) -> None:
    sent = time.time()
    requests.post(sink.url + STATELESS, data=body_of(range(5), sent), headers=BEARER)
    samples = sink.stats(samples=True)["samples"]
    assert sorted(s[0] for s in samples) == list(range(5))
    assert all(abs(s[1] - sent) < 1e-3 and s[2] >= s[1] for s in samples)
    sink.configure(status=503)
    assert (
        requests.post(sink.url + STATELESS, data=body_of(range(1)), headers=BEARER).status_code
        == 503
    )
    sink.configure(status=None)
    assert (
        requests.post(sink.url + STATELESS, data=body_of(range(1)), headers=BEARER).status_code
        == 204
    )


def test_sink_restarts_on_the_same_port_with_fresh_counters(sink: Sink) -> None:
    requests.post(sink.url + STATELESS, data=body_of(range(4)), headers=BEARER)
    port = sink.port
    sink.stop()
    with pytest.raises(requests.ConnectionError):
        requests.post(sink.url + STATELESS, data=body_of(range(4)), headers=BEARER)
    sink.start()
    assert sink.port == port and sink.stats()["events"] == 0
    with pytest.raises(TimeoutError):
        sink.wait_events(1, timeout=0.2)


def test_run_all_discovers_scripts_but_not_support_modules() -> None:
    names = [os.path.basename(p) for p in run_all.discover()]
    assert "peer_syslog_ng.py" in names and "footprint.py" in names
    assert "_footprint.py" not in names and "agent_footprint.py" not in names
    assert not set(names) & run_all.SUPPORT
    assert not [n for n in names if n.startswith("_")]
    assert run_all.module(run_all.discover("peer")[0]) == "bench.peer_syslog_ng"


def test_median_run_is_a_whole_run_with_every_figure() -> None:
    runs = [
        {"events_per_s": 3.0, "rss": 1},
        {"events_per_s": 1.0, "rss": 2},
        {"events_per_s": 2.0, "rss": 3},
    ]
    assert runner.median_run(runs) == {"events_per_s": 2.0, "rss": 3, "all_events_per_s": [3, 1, 2]}


@pytest.mark.timeout(120)
def test_syslog_ng_peer_delivers_every_event() -> None:
    if peer_syslog_ng.find_syslog_ng(install=False) is None:
        pytest.skip("syslog-ng with the http module is not installed")
    result = peer_syslog_ng.run_throughput(3000)
    assert result["events"] == 3000 and result["bad_requests"] == 0
    assert result["peak_rss_mb"] > 0
