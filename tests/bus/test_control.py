"""Control sockets answer status, and survive bad requests."""

from __future__ import annotations

import time

import msgpack
import pytest
import zmq

from bus.control import ControlServer, request
from bus.errors import BusTimeout


def test_status_unknown_commands_and_garbage(run_dir):
    endpoint = f"ipc://{run_dir}/control-test.sock"
    calls = []

    def status(req):
        calls.append(req)
        return {"ok": True, "received": 42}

    def broken(_req):
        raise RuntimeError("handler bug")

    server = ControlServer(endpoint, {"status": status, "broken": broken})
    server.start()
    try:
        assert request(endpoint, {"cmd": "status"}) == {"ok": True, "received": 42}
        assert request(endpoint, {"cmd": "nope"}) == {
            "ok": False,
            "error": "unknown command 'nope'",
        }
        assert request(endpoint, {"cmd": "broken"})["error"] == "RuntimeError: handler bug"
        assert request(endpoint, {"no": "cmd"})["ok"] is False

        ctx = zmq.Context.instance()
        raw = ctx.socket(zmq.REQ)
        raw.connect(endpoint)
        raw.send(b"\xc1garbage")
        assert raw.poll(5000)
        assert msgpack.unpackb(raw.recv())["error"] == "request is not msgpack"
        raw.close(linger=0)
        # still serving after all of that
        assert request(endpoint, {"cmd": "status"})["received"] == 42
    finally:
        server.stop()


def test_request_to_nobody_times_out(run_dir):
    with pytest.raises(BusTimeout):
        request(f"ipc://{run_dir}/control-none.sock", {"cmd": "status"}, timeout=0.3)


@pytest.mark.timeout(30)
def test_an_idle_control_server_stops_at_once(run_dir):
    """Its thread waits in a poll with no timeout: stop() itself must wake it."""
    endpoint = f"ipc://{run_dir}/control-idle.sock"
    server = ControlServer(endpoint, {"status": lambda _req: {"ok": True}})
    server.start()
    assert request(endpoint, {"cmd": "status"}) == {"ok": True}
    started = time.monotonic()
    server.stop()
    assert server._thread is not None and not server._thread.is_alive()
    assert time.monotonic() - started < 1.5  # stop() gives up joining after 2 s
    with pytest.raises(BusTimeout):
        request(endpoint, {"cmd": "status"}, timeout=0.3)
