"""Socket factory: ipc permissions, refusal of a live owner, take-over of a stale socket."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import zmq

from bus import sockets
from bus.errors import BusError, EndpointInUse
from bus.sockets import (
    OVERSIZE_MARGIN,
    SocketOptions,
    WakeEvent,
    Waker,
    bind,
    connect,
    make_socket,
    max_frame_bytes,
)
from tests.fixtures.common import wait_for


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def test_ipc_socket_file_is_0660(ctx, run_dir):
    binding = bind(make_socket(ctx, zmq.PULL), f"ipc://{run_dir}/events.sock")
    try:
        mode = stat.S_IMODE(os.stat(run_dir / "events.sock").st_mode)
        assert mode == 0o660
        assert not mode & stat.S_IWOTH
    finally:
        binding.close()
    assert not (run_dir / "events.sock").exists(), "a clean close leaves no socket file"


def test_second_binder_in_same_process_is_refused(ctx, run_dir):
    endpoint = f"ipc://{run_dir}/events.sock"
    first = bind(make_socket(ctx, zmq.PULL), endpoint)
    try:
        with pytest.raises(EndpointInUse, match="already served by a live process"):
            bind(make_socket(ctx, zmq.PULL), endpoint)
    finally:
        first.close()
    # once the owner is gone the endpoint can be bound again
    bind(make_socket(ctx, zmq.PULL), endpoint).close()


def test_live_owner_in_another_process_is_refused_with_its_pid(ctx, run_dir):
    endpoint = f"ipc://{run_dir}/ingest.sock"
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, zmq
                from bus.sockets import bind, make_socket
                b = bind(make_socket(zmq.Context(), zmq.ROUTER), {endpoint!r})
                print("ready", flush=True)
                sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "ready"
        with pytest.raises(EndpointInUse, match=f"pid {owner.pid}"):
            bind(make_socket(ctx, zmq.ROUTER), endpoint)
    finally:
        owner.kill()
        owner.wait(timeout=10)


def test_stale_socket_of_a_killed_owner_is_taken_over(ctx, run_dir):
    endpoint = f"ipc://{run_dir}/events.sock"
    code = (
        "import os, zmq\n"
        "from bus.sockets import bind, make_socket\n"
        f"b = bind(make_socket(zmq.Context(), zmq.PULL), {endpoint!r})\n"
        "os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], timeout=30)
    assert proc.returncode == -9
    assert (run_dir / "events.sock").exists(), "a killed owner leaves its socket file behind"

    binding = bind(make_socket(ctx, zmq.PULL), endpoint)
    try:
        push = make_socket(ctx, zmq.PUSH)
        push.connect(endpoint)
        push.send(b"hello")
        assert binding.sock.poll(5000)
        assert binding.sock.recv() == b"hello"
        push.close(linger=0)
    finally:
        binding.close()


def test_too_long_ipc_path_is_a_clear_error(ctx, tmp_path):
    endpoint = "ipc://" + str(tmp_path / ("x" * 120) / "events.sock")
    with pytest.raises(BusError, match="longer than 107 characters"):
        bind(make_socket(ctx, zmq.PULL), endpoint)


def test_tcp_reachable_from_other_hosts_needs_curve(ctx):
    with pytest.raises(BusError, match="curve_secret_key_file"):
        bind(make_socket(ctx, zmq.PULL), "tcp://0.0.0.0:0")


def test_plain_tcp_on_loopback_is_refused_unless_allowed(ctx):
    """Any local user can connect to 127.0.0.1: without CURVE that is the whole bus."""
    with pytest.raises(BusError, match="allow_plain_loopback"):
        bind(make_socket(ctx, zmq.PULL), "tcp://127.0.0.1:0")
    plain = SocketOptions(allow_plain_loopback=True)
    with pytest.raises(BusError, match="reachable from other hosts"):
        bind(make_socket(ctx, zmq.PULL), "tcp://0.0.0.0:0", plain)  # loopback only


def test_allowed_plain_loopback_serves_and_warns_once(ctx, caplog, monkeypatch):
    monkeypatch.setattr(sockets, "_plain_warned", set())  # once per process and endpoint
    plain = SocketOptions(allow_plain_loopback=True)
    with caplog.at_level(logging.WARNING, logger="agentbus.bus"):
        first = bind(make_socket(ctx, zmq.PULL, plain), "tcp://127.0.0.1:0", plain)
    try:
        endpoint = first.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        push = make_socket(ctx, zmq.PUSH)
        connect(push, endpoint)
        push.send(b"plain")
        assert first.sock.poll(5000) and first.sock.recv() == b"plain"
        push.close(linger=0)
    finally:
        first.close()
    assert [r.getMessage() for r in caplog.records if "plain tcp" in r.getMessage()] == [
        "bus: tcp://127.0.0.1:0 serves plain tcp (bus.allow_plain_loopback): any local user "
        "can send and read on it"
    ]


def test_a_busy_tcp_port_is_refused(ctx):
    plain = SocketOptions(allow_plain_loopback=True)
    first = bind(make_socket(ctx, zmq.PULL, plain), "tcp://127.0.0.1:0", plain)
    port = first.sock.getsockopt(zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1]
    try:
        with pytest.raises(EndpointInUse):
            bind(make_socket(ctx, zmq.PULL, plain), f"tcp://127.0.0.1:{port}", plain)
    finally:
        first.close()


def test_curve_protects_a_tcp_endpoint(ctx):
    public, secret = zmq.curve_keypair()
    server_opts = SocketOptions(curve_secret_key=secret, curve_public_key=public)
    server = bind(make_socket(ctx, zmq.PULL, server_opts), "tcp://127.0.0.1:0", server_opts)
    endpoint = server.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
    try:
        good = make_socket(ctx, zmq.PUSH, server_opts)
        connect(good, endpoint, server_opts)
        good.send(b"with keys")
        assert server.sock.poll(5000)
        assert server.sock.recv() == b"with keys"

        plain = make_socket(ctx, zmq.PUSH)
        plain.setsockopt(zmq.SNDTIMEO, 300)
        connect(plain, endpoint)
        # IMMEDIATE: no handshake completes without keys, so nothing can be queued.
        with pytest.raises(zmq.Again):
            plain.send(b"without keys")
        good.close(linger=0)
        plain.close(linger=0)
    finally:
        server.close()


@pytest.mark.timeout(30)
def test_a_waker_wakes_a_poll_with_no_timeout_and_drain_quiets_it() -> None:
    waker = Waker()
    poller = zmq.Poller()
    poller.register(waker.fileno(), zmq.POLLIN)
    try:
        assert poller.poll(0) == []
        threading.Timer(0.1, waker.wake).start()
        assert dict(poller.poll(10_000)) == {waker.fileno(): zmq.POLLIN}
        waker.wake()  # twice before the drain: one drain is enough
        waker.drain()
        assert poller.poll(0) == []
    finally:
        waker.close()
    waker.wake()  # after close: a no-op, not an error on a reused fd


@pytest.mark.timeout(30)
def test_a_wake_event_is_readable_while_set_from_any_thread() -> None:
    event = WakeEvent()
    poller = zmq.Poller()
    poller.register(event.fileno(), zmq.POLLIN)
    try:
        threading.Timer(0.1, event.set).start()
        started = time.monotonic()
        assert poller.poll(10_000) and event.is_set()
        assert time.monotonic() - started < 5.0
        assert poller.poll(0), "stays readable for every poller while set"
        event.clear()
        assert poller.poll(0) == [] and not event.is_set()
        assert not event.wait(0.01)  # still a threading.Event
    finally:
        event.close()
    event.set()  # after close it still works as a plain Event
    assert event.is_set()


@pytest.mark.timeout(30)
def test_a_wake_event_set_by_a_signal_handler_wakes_the_poll_at_once() -> None:
    """pyzmq retries a poll that a signal interrupted; the handler's set() ends it."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run in the main thread only")
    event = WakeEvent()
    poller = zmq.Poller()
    poller.register(event.fileno(), zmq.POLLIN)
    previous = signal.signal(signal.SIGUSR1, lambda *_: event.set())
    try:
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        started = time.monotonic()
        assert poller.poll(10_000), "the poll went on after the signal handler set the event"
        assert time.monotonic() - started < 5.0
    finally:
        signal.signal(signal.SIGUSR1, previous)
        event.close()


def test_an_owner_only_ipc_socket_is_0600(ctx, run_dir):
    from bus.sockets import OWNER_ONLY_MODE

    binding = bind(make_socket(ctx, zmq.REP), f"ipc://{run_dir}/admin.sock", mode=OWNER_ONLY_MODE)
    try:
        assert stat.S_IMODE(os.stat(run_dir / "admin.sock").st_mode) == 0o600
    finally:
        binding.close()


def test_receive_hwm_comes_from_the_byte_budget(ctx):
    opts = SocketOptions(max_message_bytes=4 << 20, receive_budget_bytes=64 << 20, hwm=1000)
    assert opts.receive_hwm == 16
    assert SocketOptions(max_message_bytes=4 << 20, receive_budget_bytes=1).receive_hwm == 1
    assert SocketOptions(max_message_bytes=1, receive_budget_bytes=1 << 30).receive_hwm == 1000
    for kind, hwm in ((zmq.ROUTER, 16), (zmq.REP, 16), (zmq.PULL, 1000)):
        sock = make_socket(ctx, kind, opts)
        assert sock.getsockopt(zmq.RCVHWM) == hwm, kind
        assert sock.getsockopt(zmq.MAXMSGSIZE) == (4 << 20) + OVERSIZE_MARGIN
        sock.close(linger=0)
    push = make_socket(ctx, zmq.PUSH, opts)  # a client: its receive side is not the budget
    assert push.getsockopt(zmq.RCVHWM) == 1000 and push.getsockopt(zmq.SNDHWM) == 1000
    push.close(linger=0)


@pytest.mark.timeout(60)
def test_a_flooding_client_cannot_make_a_router_socket_hold_more_than_its_budget(ctx, run_dir):
    """The attack: a client sends 1 MiB requests to a socket that does not read. What the
    receiving side holds is bounded by the budget (in messages per peer), so the sender
    is held back (its send times out) once the budget and the kernel buffers are full."""
    limit = 1 << 20
    opts = SocketOptions(max_message_bytes=limit, receive_budget_bytes=4 * limit, hwm=1000)
    server = bind(make_socket(ctx, zmq.ROUTER, opts), f"ipc://{run_dir}/flood.sock", opts)
    push = ctx.socket(zmq.DEALER)
    push.setsockopt(zmq.SNDHWM, 1)
    push.setsockopt(zmq.SNDTIMEO, 500)
    push.connect(server.endpoint)
    frame = b"x" * limit
    sent = 0
    try:
        while sent < 200:  # 200 MiB if nothing held the flood back
            try:
                push.send(frame)
            except zmq.Again:
                break
            sent += 1
        # budget 4 messages, the sender's 1, and what the socket buffers of both ends hold
        assert sent < 40, f"{sent} MiB accepted by a receiver that reads nothing"
        received = 0
        while server.sock.poll(1000):
            server.sock.recv_multipart()
            received += 1
        assert received == sent  # held back, not dropped: back-pressure, nothing lost
    finally:
        push.close(linger=0)
        server.close()


@pytest.mark.timeout(30)
def test_a_publisher_that_closes_right_after_sending_loses_nothing(ctx, run_dir):
    """The common collector script: send a few hundred events, close, exit. libzmq drops
    what a closing PUSH peer's connection holds beyond the receiver's RCVHWM, so the
    events socket must not take the small byte-budget HWM of the request sockets."""
    server = bind(make_socket(ctx, zmq.PULL), f"ipc://{run_dir}/events.sock")
    push = make_socket(ctx, zmq.PUSH)
    push.connect(server.endpoint)
    try:
        assert wait_for(lambda: push.poll(10, zmq.POLLOUT))  # connected
        for i in range(300):
            push.send(b"%d" % i + b"x" * 100)
        push.close()  # with its linger, before the receiver has read anything
        received = 0
        while server.sock.poll(1000):
            server.sock.recv()
            received += 1
        assert received == 300
    finally:
        server.close()


@pytest.mark.parametrize("extra", [-1, 0, 1, OVERSIZE_MARGIN, OVERSIZE_MARGIN + 1])
def test_frames_at_the_maxmsgsize_limit(ctx, run_dir, extra):
    """A frame up to the limit and a small margin reaches the service (which rejects what
    is over max_message_bytes, counted); a larger one is dropped by libzmq with the
    sender's connection, and the socket goes on serving others."""
    limit = 256 * 1024
    opts = SocketOptions(max_message_bytes=limit)
    server = bind(make_socket(ctx, zmq.PULL, opts), f"ipc://{run_dir}/max.sock", opts)
    try:
        push = ctx.socket(zmq.PUSH)
        push.connect(server.endpoint)
        push.send(b"y" * (limit + extra))
        delivered = server.sock.poll(1500)
        assert delivered == (limit + extra <= max_frame_bytes(opts))
        if delivered:
            assert len(server.sock.recv()) == limit + extra
        push.close(linger=0)
        other = ctx.socket(zmq.PUSH)
        other.connect(server.endpoint)
        other.send(b"still serving")
        assert server.sock.poll(5000) and server.sock.recv() == b"still serving"
        other.close(linger=0)
    finally:
        server.close()


def test_binding_never_changes_the_umask_another_thread_sees(tmp_path: Path) -> None:
    # In one process (services as threads) a umask changed for a bind would also apply to
    # a directory another thread creates meanwhile: it came out 0600, unusable.
    stop = threading.Event()
    modes: set[int] = set()

    def make_dirs() -> None:
        n = 0
        while not stop.is_set():
            d = tmp_path / f"d{n}"
            d.mkdir()
            modes.add(stat.S_IMODE(d.stat().st_mode) & 0o700)
            d.rmdir()
            n += 1

    maker = threading.Thread(target=make_dirs)
    maker.start()
    ctx = zmq.Context()
    try:
        for i in range(100):
            endpoint = f"ipc://{tmp_path}/s{i}.sock"
            bind(make_socket(ctx, zmq.PULL), endpoint).close(linger_ms=0)
    finally:
        stop.set()
        maker.join()
        ctx.term()
    assert modes == {0o700}
