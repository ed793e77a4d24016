"""Control sockets answer status, and survive bad requests."""

from __future__ import annotations

import os
import stat
import time

import msgpack
import pytest
import zmq

from bus.control import ControlServer, peer_uid, request
from bus.errors import BusTimeout


def test_status_unknown_commands_and_garbage(run_dir):
    endpoint = f"ipc://{run_dir}/control-test.sock"
    calls = []

    def status(req):
        calls.append(req)
        return {"ok": True, "received": 42}

    def broken(_req):
        raise RuntimeError("handler bug")

    server = ControlServer(
        endpoint, {"status": status, "broken": broken}, read_only=frozenset({"status", "broken"})
    )
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


def test_status_and_admin_sockets_split_the_commands(run_dir):
    """Read-only commands on the status socket (0660), the others on the admin socket
    (0600) only; an admin command on the status socket names the admin socket."""
    status_ep = f"ipc://{run_dir}/control-svc.sock"
    admin_ep = f"ipc://{run_dir}/admin-svc.sock"
    restarted = []
    server = ControlServer(
        status_ep,
        {
            "status": lambda _r: {"ok": True},
            "quarantine_list": lambda _r: {"ok": True, "entries": []},
            "restart": lambda _r: restarted.append(1) or {"ok": True},
            "new_thing": lambda _r: {"ok": True},  # not declared read-only: admin only
        },
        admin_endpoint=admin_ep,
    )
    server.start()
    try:
        assert stat.S_IMODE(os.stat(run_dir / "control-svc.sock").st_mode) == 0o660
        assert stat.S_IMODE(os.stat(run_dir / "admin-svc.sock").st_mode) == 0o600
        assert request(status_ep, {"cmd": "status"}) == {"ok": True}
        assert request(status_ep, {"cmd": "quarantine_list"})["ok"] is True
        for cmd in ("restart", "new_thing"):
            reply = request(status_ep, {"cmd": cmd})
            assert reply["ok"] is False and admin_ep in reply["error"], reply
        assert restarted == []
        assert request(admin_ep, {"cmd": "restart"}) == {"ok": True}
        assert request(admin_ep, {"cmd": "status"}) == {"ok": True}
        assert restarted == [1]
        assert server.rejected == {"admin_only": 2}
    finally:
        server.stop()
    assert not (run_dir / "admin-svc.sock").exists()


def test_peer_uid_is_read_from_the_connection(run_dir):
    """libzmq puts the peer's SO_PEERCRED into the frame's Peer-Address (ipc)."""
    ctx = zmq.Context()
    try:
        rep = ctx.socket(zmq.REP)
        rep.bind(f"ipc://{run_dir}/peer.sock")
        req = ctx.socket(zmq.REQ)
        req.connect(f"ipc://{run_dir}/peer.sock")
        req.send(b"who")
        assert rep.poll(5000)
        assert peer_uid(rep.recv(copy=False)) == os.geteuid()
    finally:
        ctx.destroy(linger=0)
