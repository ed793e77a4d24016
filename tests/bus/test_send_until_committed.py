"""bus.Ingest.send_until_committed: retried while the forwarder is absent, silent or full."""

from __future__ import annotations

import threading
import time
from typing import Any

import msgpack
import pytest
import zmq

from bus import Ingest, client
from bus.envelope import decode_frame, encode_events
from bus.sockets import WakeEvent, bind, make_socket

EVENT = {"module": "myapp", "collector": "audit", "data": {"msg": "hi"}}
OK = {"ok": True, "accepted": 1}
FULL = {"ok": False, "accepted": 0, "error": "full"}


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


class Forwarder(threading.Thread):
    """A ROUTER standing in for the forwarder's ingest socket, with scripted answers.

    Each request takes the next answer of ``script`` (then :data:`OK` forever): a reply
    map, or None for no answer at all.
    """

    def __init__(
        self, ctx: zmq.Context, endpoint: str, script: list[dict[str, Any] | None]
    ) -> None:
        super().__init__(daemon=True)
        self.binding = bind(make_socket(ctx, zmq.ROUTER), endpoint)
        self.script = list(script)
        self.stop = threading.Event()
        self.frames: list[bytes] = []

    def run(self) -> None:
        sock = self.binding.sock
        while not self.stop.is_set():
            if not sock.poll(20):
                continue
            *envelope, frame = sock.recv_multipart()
            self.frames.append(frame)
            answer = self.script.pop(0) if self.script else OK
            if answer is not None:
                sock.send_multipart([*envelope, msgpack.packb(answer)])
        self.binding.close(linger_ms=0)

    def close(self) -> None:
        self.stop.set()
        self.join(5)


def test_full_is_retried_with_the_given_delays_until_committed(ctx, run_dir) -> None:
    fwd = Forwarder(ctx, f"ipc://{run_dir}/ingest.sock", [FULL, FULL, OK])
    fwd.start()
    retries: list[tuple[str, str]] = []
    asked: list[int] = []

    def delay(failures: int) -> float:
        asked.append(failures)
        return 0.01

    try:
        with Ingest(run_dir=str(run_dir), context=ctx, timeout=5) as ingest:
            result = ingest.send_until_committed(
                [EVENT],
                threading.Event(),
                retry_delay=delay,
                on_retry=lambda reason, detail: retries.append((reason, detail)),
            )
    finally:
        fwd.close()
    assert result is not None and result.ok and result.accepted == 1
    assert [r for r, _ in retries] == ["full", "full"]
    assert "is full" in retries[0][1]
    assert asked == [1, 2]
    assert len(fwd.frames) == 3 and decode_frame(fwd.frames[0], 1 << 20) == [EVENT]


def test_a_silent_forwarder_times_out_and_the_next_answer_pairs_with_the_next_try(
    ctx, run_dir
) -> None:
    fwd = Forwarder(ctx, f"ipc://{run_dir}/ingest.sock", [None, OK])
    fwd.start()
    reasons: list[str] = []
    try:
        with Ingest(run_dir=str(run_dir), context=ctx, timeout=0.3) as ingest:
            result = ingest.send_until_committed(
                EVENT, threading.Event(), retry_delay=0.01, on_retry=lambda r, d: reasons.append(r)
            )
    finally:
        fwd.close()
    assert result is not None and result.ok
    assert reasons == ["timeout"]


def test_a_refusal_is_returned_not_retried(ctx, run_dir) -> None:
    rejected = {
        "ok": False,
        "accepted": 1,
        "error": "rejected",
        "rejected": [{"index": 1, "reason": "missing_field", "message": "data is required"}],
    }
    fwd = Forwarder(ctx, f"ipc://{run_dir}/ingest.sock", [rejected])
    fwd.start()
    try:
        with Ingest(run_dir=str(run_dir), context=ctx, timeout=5) as ingest:
            result = ingest.send_until_committed([EVENT, EVENT], threading.Event())
    finally:
        fwd.close()
    assert result is not None and not result.ok and result.error == "rejected"
    assert [(r.index, r.reason) for r in result.rejected] == [(1, "missing_field")]
    assert len(fwd.frames) == 1


def test_a_stop_request_ends_the_wait_for_an_absent_forwarder_at_once(ctx, run_dir) -> None:
    stop = threading.Event()
    reasons: list[str] = []
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with Ingest(run_dir=str(run_dir), context=ctx, timeout=10) as ingest:
        result = ingest.send_until_committed(
            [EVENT], stop, retry_delay=10, on_retry=lambda r, d: reasons.append(r)
        )
    assert result is None
    assert time.monotonic() - started < 2.0  # not the 10 s timeout, nor the 10 s delay
    assert reasons == []


def test_a_stop_request_ends_the_wait_for_a_silent_forwarder(ctx, run_dir) -> None:
    fwd = Forwarder(ctx, f"ipc://{run_dir}/ingest.sock", [None])
    fwd.start()
    stop = threading.Event()
    try:
        with Ingest(run_dir=str(run_dir), context=ctx, timeout=10) as ingest:
            threading.Timer(0.3, stop.set).start()
            started = time.monotonic()
            assert ingest.send_until_committed([EVENT], stop) is None
            assert time.monotonic() - started < 2.0
    finally:
        fwd.close()
    assert len(fwd.frames) == 1


def test_an_already_encoded_frame_is_sent_as_it_is(ctx, run_dir) -> None:
    fwd = Forwarder(ctx, f"ipc://{run_dir}/ingest.sock", [OK])
    fwd.start()
    frame = encode_events([EVENT])
    try:
        with Ingest(run_dir=str(run_dir), context=ctx, timeout=5) as ingest:
            result = ingest.send_until_committed([EVENT], threading.Event(), frame=frame)
    finally:
        fwd.close()
    assert result is not None and result.ok
    assert fwd.frames == [frame]


def test_nothing_is_sent_when_already_stopping(ctx, run_dir) -> None:
    stop = threading.Event()
    stop.set()
    with Ingest(run_dir=str(run_dir), context=ctx, timeout=5) as ingest:
        assert ingest.send_until_committed([EVENT], stop) is None


@pytest.mark.timeout(30)
@pytest.mark.parametrize("silent", [False, True], ids=["absent", "silent"])
def test_a_wake_event_ends_the_wait_at_once_without_looking_at_a_clock(
    ctx, run_dir, monkeypatch, silent
) -> None:
    """A WakeEvent is polled with the socket: no STOP_CHECK_MS slices (made huge here)."""
    monkeypatch.setattr(client, "STOP_CHECK_MS", 60_000)
    fwd = Forwarder(ctx, f"ipc://{run_dir}/ingest.sock", [None]) if silent else None
    if fwd is not None:
        fwd.start()
    stop = WakeEvent()
    try:
        with Ingest(run_dir=str(run_dir), context=ctx, timeout=20) as ingest:
            threading.Timer(0.3, stop.set).start()
            started = time.monotonic()
            assert ingest.send_until_committed([EVENT], stop) is None
            assert time.monotonic() - started < 5.0  # not the 20 s timeout
    finally:
        stop.close()
        if fwd is not None:
            fwd.close()
