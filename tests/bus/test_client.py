"""The collector SDK against real receiving sockets."""

from __future__ import annotations

import threading
import time

import msgpack
import pytest
import zmq

from bus import BusTimeout, Ingest, InvalidEvent, Publisher
from bus.envelope import Event, decode_frame
from bus.errors import InvalidEvent as _InvalidEvent
from bus.sockets import bind, make_socket

EVENT = {"module": "myapp", "collector": "audit", "data": {"msg": "hi"}}


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


class Acker(threading.Thread):
    """A ROUTER that answers like the forwarder's ingest socket (validation only)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, answer: bool = True) -> None:
        super().__init__(daemon=True)
        self.binding = bind(make_socket(ctx, zmq.ROUTER), endpoint)
        self.answer = answer
        self.stop = threading.Event()
        self.received: list[list[bytes]] = []

    def run(self) -> None:
        sock = self.binding.sock
        while not self.stop.is_set():
            if not sock.poll(50):
                continue
            frames = sock.recv_multipart()
            self.received.append(frames)
            if not self.answer:
                continue
            accepted, rejected = 0, []
            for i, raw in enumerate(decode_frame(frames[-1], 1 << 20)):
                try:
                    Event.from_wire(raw)
                    accepted += 1
                except _InvalidEvent as exc:
                    rejected.append({"index": i, "reason": exc.reason, "message": exc.message})
            reply = {"ok": not rejected, "accepted": accepted}
            if rejected:
                reply.update(error="rejected", rejected=rejected)
            sock.send_multipart([*frames[:-1], msgpack.packb(reply)])
        self.binding.close(linger_ms=0)


def test_publisher_delivers_single_events_and_batches(ctx, run_dir):
    pull = bind(make_socket(ctx, zmq.PULL), f"ipc://{run_dir}/events.sock")
    try:
        with Publisher(run_dir=str(run_dir), context=ctx) as pub:
            pub.send("myapp", "audit", {"msg": "one"})
            pub.send_batch([EVENT, EVENT])
            pub.send("fim", "file", {"p": 1}, stateful=True, id="x", operation="create")
        frames = []
        for _ in range(3):
            assert pull.sock.poll(5000)
            frames.append(msgpack.unpackb(pull.sock.recv()))
        assert frames[0]["data"] == {"msg": "one"}
        assert frames[1] == [EVENT, EVENT]
        assert frames[2]["type"] == "stateful" and frames[2]["operation"] == "create"
    finally:
        pull.close()


def test_publisher_refuses_an_invalid_event_before_sending(ctx, run_dir):
    with Publisher(run_dir=str(run_dir), context=ctx) as pub, pytest.raises(InvalidEvent) as info:
        pub.send_event({"module": "myapp", "data": {}})
    assert info.value.reason == "missing_field"


def test_publisher_never_blocks_forever_without_a_forwarder(ctx, run_dir):
    with Publisher(run_dir=str(run_dir), context=ctx, send_timeout=0.3) as pub:
        started = time.monotonic()
        with pytest.raises(BusTimeout, match="did not take the event within 0.3s"):
            pub.send("myapp", "audit", {"msg": "lost?"})
        assert time.monotonic() - started < 3


def test_ingest_reports_accepted_and_rejected_by_index(ctx, run_dir):
    acker = Acker(ctx, f"ipc://{run_dir}/ingest.sock")
    acker.start()
    try:
        with Ingest(run_dir=str(run_dir), context=ctx, timeout=5) as ingest:
            ok = ingest.send(EVENT)
            assert ok.ok and ok.accepted == 1 and ok.rejected == []
            mixed = ingest.send([EVENT, {"module": "m", "collector": "c"}, EVENT])
        assert not mixed.ok
        assert mixed.accepted == 2
        assert [(r.index, r.reason) for r in mixed.rejected] == [(1, "missing_field")]
        assert "data is required" in mixed.rejected[0].message
    finally:
        acker.stop.set()
        acker.join(5)


def test_ingest_times_out_with_a_clear_error_and_recovers(ctx, run_dir):
    silent = Acker(ctx, f"ipc://{run_dir}/ingest.sock", answer=False)
    silent.start()
    try:
        with Ingest(run_dir=str(run_dir), context=ctx, timeout=0.3) as ingest:
            with pytest.raises(BusTimeout, match="did not answer within 0.3s"):
                ingest.send(EVENT)
            silent.answer = True
            # a fresh socket: the next answer is for the next request
            assert ingest.send(EVENT).accepted == 1
    finally:
        silent.stop.set()
        silent.join(5)


def test_ingest_refuses_oversized_messages_locally(ctx, run_dir):
    with (
        Ingest(run_dir=str(run_dir), context=ctx, max_message_bytes=1000) as ingest,
        pytest.raises(InvalidEvent) as info,
    ):
        ingest.send({**EVENT, "data": {"blob": "x" * 2000}})
    assert info.value.reason == "too_large"
