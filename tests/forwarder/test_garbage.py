"""Bad input of every kind is rejected by reason while good events keep flowing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
import zmq

from core.config import Config
from core.service import endpoints_from_config
from tests.fixtures.agent import EnrolledAgent
from tests.fixtures.common import wait_for
from tests.fixtures.forwarder import ForwarderThread
from tests.forwarder.helpers import FAST, seqs, stateless

MAX = 64 * 1024


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


GOOD = {"module": "m", "collector": "c", "data": {"k": "v"}}

#: (frame, the reason it is rejected for)
GARBAGE: list[tuple[bytes, str]] = [
    (b"\xc1\x00garbage", "not_msgpack"),
    (b"\x92\x01", "not_msgpack"),  # truncated array
    (pack([GOOD]) + b"x" * (MAX + 100), "too_large"),
    (pack(42), "not_map"),
    (pack("a string"), "not_map"),
    (pack([]), "empty_batch"),
    (pack([42]), "not_map"),
    (pack({"collector": "c", "data": {}}), "missing_field"),
    (pack({"module": "m", "data": {}}), "missing_field"),
    (pack({"module": "m", "collector": "c"}), "missing_field"),
    (pack({"module": 1, "collector": "c", "data": {}}), "wrong_type"),
    (pack({"module": "m", "collector": "c", "data": [1, 2]}), "wrong_type"),
    (pack({**GOOD, "ts": "yesterday"}), "wrong_type"),
    (pack({**GOOD, "type": "weird"}), "bad_value"),
    (pack({**GOOD, "module": ""}), "bad_value"),
    (pack({**GOOD, "module": "m" * 129}), "bad_value"),
    (
        pack({**GOOD, "type": "stateful", "module": "nope", "id": "x", "operation": "create"}),
        "bad_value",
    ),
    (
        pack({**GOOD, "type": "stateful", "module": "fim", "id": "x", "operation": "merge"}),
        "bad_value",
    ),
    (pack({**GOOD, "type": "stateful", "module": "fim", "id": "x"}), "missing_field"),
    (pack({"module": "m", "collector": "c", "data": {"b": b"\x00bytes"}}), "not_json"),
    (pack({"module": "m", "collector": "c", "data": {1: "int key"}}), "not_json"),
    (
        pack({"module": "m", "collector": "c", "data": {"x": msgpack.ExtType(5, b"ext")}}),
        "not_json",
    ),
]


def expected_counts(items: list[tuple[bytes, str]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for _frame, reason in items:
        out[reason] = out.get(reason, 0) + 1
    return out


@pytest.fixture
def agent(enroll_agent: Callable[..., EnrolledAgent]) -> EnrolledAgent:
    return enroll_agent(sections={"forwarder": FAST, "bus": {"max_message_bytes": MAX}})


@pytest.fixture
def sockets() -> Iterator[Callable[[int, str], zmq.Socket]]:
    """Raw client sockets (LINGER 0), closed at teardown."""
    context = zmq.Context()
    made: list[zmq.Socket] = []

    def make(kind: int, endpoint: str) -> zmq.Socket:
        sock = context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        made.append(sock)
        return sock

    yield make
    for sock in made:
        sock.close(linger=0)
    context.term()


def test_garbage_on_the_fast_path_is_counted_by_reason_and_good_events_flow(
    agent: EnrolledAgent,
    run_forwarder: Callable[[Config], ForwarderThread],
    sockets: Callable[[int, str], zmq.Socket],
) -> None:
    fw = run_forwarder(agent.config)
    push = sockets(zmq.PUSH, endpoints_from_config(agent.config).events)
    seq = 0
    for frame, _reason in GARBAGE:
        push.send(pack(stateless(seq)))
        seq += 1
        push.send(frame)
    push.send_multipart([pack(stateless(seq)), pack(stateless(seq + 1))])  # two frames
    # a batch mixing good and bad events: the good ones go on
    push.send(pack([stateless(1000), {"module": "m"}, stateless(1001)]))
    push.send(pack(stateless(seq + 2)))
    expected = expected_counts([*GARBAGE, (b"", "multipart"), (b"", "missing_field")])

    agent.server.wait_for_events(seq + 3, module="logcollector", timeout=20)
    got = sorted(seqs(agent.server.events(module="logcollector")))
    assert got == [*range(seq), seq + 2, 1000, 1001]
    status = fw.status()
    assert status["rejected"] == expected
    assert fw.alive


def test_garbage_on_the_acknowledged_path_gets_the_reason_back(
    agent: EnrolledAgent,
    run_forwarder: Callable[[Config], ForwarderThread],
    sockets: Callable[[int, str], zmq.Socket],
) -> None:
    fw = run_forwarder(agent.config)
    dealer = sockets(zmq.DEALER, endpoints_from_config(agent.config).ingest)

    def ask(*frames: bytes) -> dict[str, Any]:
        dealer.send_multipart(list(frames))
        assert dealer.poll(5000), "no reply"
        return msgpack.unpackb(dealer.recv(), raw=False)  # type: ignore[no-any-return]

    for frame, reason in GARBAGE:
        reply = ask(frame)
        assert reply["ok"] is False and reply["accepted"] == 0, (reason, reply)
        if reply["error"] == "rejected":  # the frame was a batch of one bad event
            assert [r["reason"] for r in reply["rejected"]] == [reason]
            assert reply["rejected"][0]["index"] == 0
        else:
            assert reply["error"] == reason
            assert reply["rejected"][0]["index"] == -1
        assert reply["rejected"][0]["message"]

    reply = ask(pack(stateless(1)), pack(stateless(2)))
    assert reply["error"] == "multipart"

    reply = ask(pack([stateless(10), {"module": "m", "collector": "c"}, stateless(11)]))
    assert reply == {
        "ok": False,
        "accepted": 2,
        "error": "rejected",
        "rejected": [{"index": 1, "reason": "missing_field", "message": "data is required"}],
    }
    assert ask(pack(stateless(12))) == {"ok": True, "accepted": 1}
    agent.server.wait_for_events(3, module="logcollector")
    assert sorted(seqs(agent.server.events(module="logcollector"))) == [10, 11, 12]
    wait_for(lambda: sum(fw.status()["rejected"].values()) == len(GARBAGE) + 2)
