"""A hostile local client floods every bus socket with garbage and oversized frames.

Events PULL, ingest ROUTER, results PULL and the control REP sockets of the supervisor,
the forwarder and the commander each get thousands of bad frames at full speed while a
well-behaved collector keeps sending numbered events. Every bad frame must be rejected
and counted by reason, no service may die or restart, and every good event must arrive.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
import zmq

from core.service import endpoints_from_config
from tests.fixtures.common import wait_for
from tests.fixtures.system import (
    EventLoad,
    children,
    commander_counters,
    counters_of,
    forwarder_counters,
    report,
    tally_events,
    wait_delivered,
)

pytestmark = [pytest.mark.system, pytest.mark.both_isolations]

MAX = 64 * 1024
#: rounds of the garbage list per data socket
ROUNDS = 2000
#: rounds per control socket (REQ waits for each answer)
CONTROL_ROUNDS = 200


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


GOOD = {"module": "m", "collector": "c", "data": {"k": "v"}}
OVERSIZED = pack([GOOD]) + b"x" * (MAX + 100)  # over the limit, under libzmq's cut-off
#: over twice the limit: libzmq drops the sender's connection before the service sees it
HUGE = b"\x00" * (3 * MAX)

#: (frames of one message, reason) for the forwarder's events and ingest sockets
EVENT_GARBAGE: list[tuple[list[bytes], str]] = [
    ([b"\xc1\xc1 not msgpack"], "not_msgpack"),
    ([pack(42)], "not_map"),
    ([pack({"collector": "c", "data": {}})], "missing_field"),
    ([pack({"module": 7, "collector": "c", "data": {}})], "wrong_type"),
    ([OVERSIZED], "too_large"),
    ([pack(GOOD), pack(GOOD)], "multipart"),
]
#: the commander's results socket
RESULT_GARBAGE: list[tuple[list[bytes], str]] = [
    ([b"\xc1\xc1 not msgpack"], "not_msgpack"),
    ([pack([1, 2])], "not_map"),
    ([pack({"nothing": "useful"})], "missing_field"),
    ([pack({"ack": 5})], "wrong_type"),
    ([pack({"id": "x", "code": 9})], "bad_value"),
    ([OVERSIZED], "too_large"),
    ([pack({"ack": "a"}), pack({"ack": "b"})], "multipart"),
]
#: every control socket
CONTROL_GARBAGE: list[tuple[list[bytes], str]] = [
    ([b"\xc1\xc1 not msgpack"], "not_msgpack"),
    ([pack(["status"])], "not_map"),
    ([pack({"cmd": "format-the-disk"})], "unknown_command"),
    ([OVERSIZED], "too_large"),
    ([pack({"cmd": "status"}), b"more"], "multipart"),
]


def expected(garbage: list[tuple[list[bytes], str]], rounds: int) -> Counter[str]:
    return Counter({reason: rounds for _frames, reason in garbage})


class Flood:
    """Hostile senders in threads; each records what it sent."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []
        self.answers: Counter[str] = Counter()
        self._lock = threading.Lock()

    def run(self, target: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                target()
            except Exception as exc:
                self.errors.append(f"{target.__name__}: {type(exc).__name__}: {exc}")

        t = threading.Thread(target=guarded, daemon=True)
        t.start()
        self.threads.append(t)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "a hostile sender is stuck"

    def push(self, endpoint: str, garbage: list[tuple[list[bytes], str]], rounds: int) -> None:
        sock = self.ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDTIMEO, 10_000)
        sock.connect(endpoint)
        for _ in range(rounds):
            for frames, _reason in garbage:
                sock.send_multipart(frames)
        sock.close(linger=10_000)

    def huge(self, endpoint: str, n: int) -> None:
        """Frames libzmq cuts off (the connection is dropped, then made again)."""
        sock = self.ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDTIMEO, 1000)
        sock.connect(endpoint)
        for _ in range(n):
            try:
                sock.send(HUGE)
            except zmq.Again:
                pass
        sock.close(linger=0)

    def ingest(self, endpoint: str, rounds: int) -> None:
        """DEALER: pipelined requests (a window under the high-water mark: a client that
        never reads its answers loses them), every answer read."""
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.SNDTIMEO, 10_000)
        sock.connect(endpoint)
        window = 100  # rounds per window: 600 requests
        for first in range(0, rounds, window):
            sent = 0
            for _ in range(min(window, rounds - first)):
                for frames, _reason in EVENT_GARBAGE:
                    sock.send_multipart(frames)
                    sent += 1
            for _ in range(sent):
                if not sock.poll(20_000):
                    raise AssertionError("the forwarder stopped answering ingest requests")
                reply = msgpack.unpackb(sock.recv(), raw=False)
                with self._lock:
                    self.answers[f"ingest:{'ok' if reply.get('ok') else reply.get('error')}"] += 1
        sock.close(linger=0)

    def control(self, endpoint: str, rounds: int) -> None:
        for _ in range(rounds):
            for frames, reason in CONTROL_GARBAGE:
                sock = self.ctx.socket(zmq.REQ)
                sock.setsockopt(zmq.LINGER, 0)
                sock.connect(endpoint)
                sock.send_multipart(frames)
                if not sock.poll(10_000):
                    raise AssertionError(f"{endpoint} stopped answering ({reason})")
                reply = msgpack.unpackb(sock.recv(), raw=False)
                sock.close()
                with self._lock:
                    self.answers[f"control:{'ok' if reply.get('ok') else 'refused'}"] += 1

    def close(self) -> None:
        self.ctx.destroy(linger=0)


def counted(counters: dict[str, Any], metric: str, reasons: Counter[str]) -> dict[str, int]:
    """How many of each reason a labelled metric counted (``{reason: n}`` in status)."""
    return {r: int(counters.get(metric, {}).get(r, 0)) for r in reasons}


@pytest.mark.timeout(180)
def test_garbage_and_oversized_frames_on_every_socket_are_counted_and_good_events_flow(
    start_agent,
):
    agent, enrolled = start_agent(bus={"max_message_bytes": MAX})
    eps = endpoints_from_config(enrolled.config)
    events = EventLoad(enrolled.config, "hostile", pause=0.01).start()
    flood = Flood()
    try:
        events.wait_acked(500)
        acked_before = events.acked_count()
        started = time.monotonic()
        flood.run(lambda: flood.push(eps.events, EVENT_GARBAGE, ROUNDS))
        flood.run(lambda: flood.huge(eps.events, 20))
        flood.run(lambda: flood.ingest(eps.ingest, ROUNDS))
        flood.run(lambda: flood.push(eps.results, RESULT_GARBAGE, ROUNDS))
        flood.run(lambda: flood.huge(eps.results, 20))
        for service in ("agent", "forwarder", "commander"):
            flood.run(lambda s=service: flood.control(eps.control(s), CONTROL_ROUNDS))
        flood.join(120)
        attack = time.monotonic() - started
        acked_during = events.acked_count() - acked_before
        events.wait_acked(500)  # and after
    finally:
        events.stop()
        flood.close()
    assert not flood.errors, flood.errors

    # exact counts: pushed frames arrive in full (every socket but the "huge" ones)
    want_fw = expected(EVENT_GARBAGE, 2 * ROUNDS)  # events PULL + ingest
    want_cmd = expected(RESULT_GARBAGE, ROUNDS)
    want_ctl = expected(CONTROL_GARBAGE, CONTROL_ROUNDS)
    wait_for(lambda: counted(forwarder_counters(agent), "rejected", want_fw) == dict(want_fw), 30)
    wait_for(
        lambda: counted(commander_counters(agent), "bad_input", want_cmd) == dict(want_cmd), 30
    )
    controls = {
        name: counted(counters_of(agent, name), "control_rejected", want_ctl)
        for name in ("agent", "forwarder", "commander")
    }

    wait_delivered(enrolled.server, events)
    ev = tally_events(enrolled.server, events)
    bad = sum(want_fw.values()) + sum(want_cmd.values()) + 3 * sum(want_ctl.values())
    report(
        ev.line("hostile client")
        + f" ({bad} bad frames in {attack:.1f}s, {bad / attack:,.0f}/s, plus 40 frames over "
        f"libzmq's cut-off; {acked_during} good events acknowledged during the attack)"
    )
    report(
        f"[hostile client] forwarder rejected {dict(want_fw)}; commander rejected "
        f"{dict(want_cmd)}; each control socket rejected {controls['forwarder']}"
    )
    assert ev.lost == 0, f"acknowledged events never delivered: {ev.missing}"
    assert acked_during > 0  # good events flowed during the attack
    assert all(c == dict(want_ctl) for c in controls.values()), controls
    assert flood.answers["ingest:ok"] == 0
    assert flood.answers["control:ok"] == 0
    assert all(not c["restarts"] for c in children(agent).values())
    assert agent.stop() == 0
