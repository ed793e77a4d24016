"""CURVE with an allow-list on tcp bus endpoints (real tcp on 127.0.0.1).

The attack: a client with a fresh random key pair (it knows the server's public key, as
every client does) connects to a CURVE endpoint and sends. CURVE alone encrypts but admits
any key; the ZAP handler refuses a key not in ``[bus] curve_clients_dir``, counts it and
logs it, and the listed clients are still served.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import pytest
import zmq
import zmq.auth

from bus import auth
from bus.client import Ingest, Publisher
from bus.sockets import Binding, SocketOptions, bind, connect, make_socket
from bus.threads import mark_service
from core.config import Config, ConfigError
from core.service import socket_options_from_config
from tests.fixtures.agent import EnrolledAgent
from tests.fixtures.common import wait_for
from tests.fixtures.forwarder import REPO, ForwarderThread, write_config


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """The server's key pair and a clients dir with one admitted client (``alice``),
    written by zmq.auth.create_certificates (``.key`` public, ``.key_secret`` pair)."""
    server_dir, clients, private = tmp_path / "server", tmp_path / "clients", tmp_path / "priv"
    for d in (server_dir, clients, private):
        d.mkdir(mode=0o700)
    _pub, server_secret = zmq.auth.create_certificates(server_dir, "server")
    Path(server_secret).chmod(0o600)
    alice_pub, alice_secret = zmq.auth.create_certificates(private, "alice")
    Path(alice_secret).chmod(0o600)
    (clients / "alice.key").write_bytes(Path(alice_pub).read_bytes())
    (clients / "alice.key").chmod(0o644)  # public: readable is fine, writable is not
    return {
        "server": Path(server_secret),
        "clients": clients,
        "alice": Path(alice_secret),
        "private": private,
    }


def server_options(keys: dict[str, Path]) -> SocketOptions:
    pair = auth.read_key_pair(keys["server"])
    return SocketOptions(
        curve_secret_key=pair.secret,
        curve_public_key=pair.public,
        curve_clients_dir=str(keys["clients"]),
    )


def client_options(server_public: bytes, pair: auth.KeyPair) -> SocketOptions:
    return SocketOptions(
        curve_server_key=server_public,
        curve_public_key=pair.public,
        curve_secret_key=pair.secret,
        send_timeout_ms=500,
    )


def _pull(ctx: zmq.Context, opts: SocketOptions) -> tuple[Binding, str]:
    server = bind(make_socket(ctx, zmq.PULL, opts), "tcp://127.0.0.1:0", opts)
    return server, server.sock.getsockopt(zmq.LAST_ENDPOINT).decode()


def _sends(ctx: zmq.Context, endpoint: str, opts: SocketOptions, server: Binding) -> bool:
    """Whether a PUSH with these keys gets a frame to the server (IMMEDIATE: a refused
    handshake leaves no peer to queue for, so the send times out)."""
    push = make_socket(ctx, zmq.PUSH, opts)
    try:
        connect(push, endpoint, opts)
        try:
            push.send(b"hello")
        except zmq.Again:
            return False
        assert server.sock.poll(5000), "queued but never arrived"
        return server.sock.recv() == b"hello"
    finally:
        push.close(linger=0)


def test_a_random_key_is_refused_and_a_listed_one_is_served(ctx, keys, caplog):
    opts = server_options(keys)
    server, endpoint = _pull(ctx, opts)
    try:
        stranger = auth.KeyPair(*zmq.curve_keypair())
        with caplog.at_level(logging.WARNING, logger="agentbus.bus"):
            assert not _sends(
                ctx, endpoint, client_options(opts.curve_public_key, stranger), server
            )
            wait_for(lambda: server.refused() >= 1)
        assert any("key not in the allow-list" in r.getMessage() for r in caplog.records)

        alice = auth.read_key_pair(keys["alice"])
        assert _sends(ctx, endpoint, client_options(opts.curve_public_key, alice), server)
        # the agent's own services connect with the server's pair: always admitted
        assert _sends(ctx, endpoint, opts, server)
        # no keys at all (a plain client) never gets through either
        assert not _sends(ctx, endpoint, SocketOptions(send_timeout_ms=500), server)
    finally:
        server.close()


def test_keys_added_to_or_removed_from_the_dir_apply_to_the_next_connection(ctx, keys):
    opts = server_options(keys)
    server, endpoint = _pull(ctx, opts)
    try:
        bob_pub, bob_secret = zmq.auth.create_certificates(keys["private"], "bob")
        Path(bob_secret).chmod(0o600)
        bob = client_options(opts.curve_public_key, auth.read_key_pair(bob_secret))
        assert not _sends(ctx, endpoint, bob, server)
        (keys["clients"] / "bob.key").write_bytes(Path(bob_pub).read_bytes())
        assert _sends(ctx, endpoint, bob, server)
        (keys["clients"] / "bob.key").unlink()
        assert not _sends(ctx, endpoint, bob, server)
    finally:
        server.close()


def test_the_sdk_client_takes_its_keys_from_the_environment(ctx, keys, monkeypatch):
    opts = server_options(keys)
    server, endpoint = _pull(ctx, opts)
    try:
        monkeypatch.setenv(auth.ENV_SERVER_KEY, opts.curve_public_key.decode())
        monkeypatch.setenv(auth.ENV_CLIENT_KEY, str(keys["alice"]))
        with Publisher(endpoint, context=ctx, send_timeout=2.0) as pub:
            pub.send("myapp", "audit", {"message": "hi"})
        assert server.sock.poll(5000)
        assert msgpack.unpackb(server.sock.recv())["module"] == "myapp"
    finally:
        server.close()


def test_a_zap_handler_does_not_touch_ipc_sockets_of_the_same_context(ctx, keys, run_dir):
    opts = server_options(keys)
    server, _endpoint = _pull(ctx, opts)
    ipc = bind(make_socket(ctx, zmq.PULL), f"ipc://{run_dir}/events.sock")
    try:
        push = ctx.socket(zmq.PUSH)
        push.connect(ipc.endpoint)
        push.send(b"ipc")
        assert ipc.sock.poll(5000) and ipc.sock.recv() == b"ipc"
        push.close(linger=0)
    finally:
        ipc.close()
        server.close()
    # the last CURVE binding closed: the handler is gone and the context can end
    assert auth.refused_counts(ctx) == {}


# -- refused at start -------------------------------------------------------------------
def _config(make_config: Callable[..., Config], **bus: object) -> Config:
    return make_config({"bus": {"events_endpoint": "tcp://127.0.0.1:0", **bus}})


def test_a_server_key_file_others_may_read_is_refused(make_config, keys):
    keys["server"].chmod(0o644)
    with pytest.raises(ConfigError, match="0644: others may read it; chmod 600"):
        socket_options_from_config(_config(make_config, curve_secret_key_file=str(keys["server"])))
    keys["server"].chmod(0o600)
    opts = socket_options_from_config(
        _config(
            make_config,
            curve_secret_key_file=str(keys["server"]),
            curve_clients_dir=str(keys["clients"]),
        )
    )
    assert opts.curve_secret_key and opts.curve_clients_dir == str(keys["clients"])


def test_a_clients_dir_or_key_file_others_may_write_is_refused(make_config, keys):
    good = {"curve_secret_key_file": str(keys["server"]), "curve_clients_dir": str(keys["clients"])}
    keys["clients"].chmod(0o777)
    with pytest.raises(ConfigError, match="others may write it"):
        socket_options_from_config(_config(make_config, **good))
    keys["clients"].chmod(0o755)
    (keys["clients"] / "alice.key").chmod(0o666)
    with pytest.raises(ConfigError, match="alice.key is mode 0666"):
        socket_options_from_config(_config(make_config, **good))
    (keys["clients"] / "alice.key").chmod(0o644)
    (keys["clients"] / "junk.key").write_text("not a key\n")
    with pytest.raises(ConfigError, match="junk.key"):
        socket_options_from_config(_config(make_config, **good))


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_key_file_owned_by_another_user_is_refused(make_config, keys):
    os.chown(keys["server"], 65534, -1)
    with pytest.raises(ConfigError, match="belongs to uid 65534"):
        socket_options_from_config(_config(make_config, curve_secret_key_file=str(keys["server"])))


def test_plain_loopback_tcp_is_refused_at_start_unless_allowed(make_config):
    with pytest.raises(ConfigError, match=r"bus.events_endpoint: .*allow_plain_loopback"):
        socket_options_from_config(_config(make_config))
    assert socket_options_from_config(_config(make_config, allow_plain_loopback=True))
    with pytest.raises(ConfigError, match="reachable from other hosts"):
        socket_options_from_config(
            make_config(
                {"bus": {"ingest_endpoint": "tcp://0.0.0.0:0", "allow_plain_loopback": True}}
            )
        )


@pytest.mark.timeout(60)
def test_the_forwarder_refuses_to_start_with_a_readable_key_file(
    enroll_agent: Callable[..., EnrolledAgent], keys, tmp_path
):
    """One clear line and exit code 2, as for every configuration error."""
    keys["server"].chmod(0o640)
    agent = enroll_agent(
        sections={
            "bus": {
                "events_endpoint": "tcp://127.0.0.1:0",
                "curve_secret_key_file": str(keys["server"]),
            }
        }
    )
    config_file = write_config(tmp_path / "fw.toml", agent.config)
    proc = subprocess.run(
        [sys.executable, "-m", "agent.main", "forwarder", "--config", str(config_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "0640: others may read it" in lines[0], proc.stderr


@pytest.mark.timeout(90)
def test_a_running_forwarder_refuses_a_stranger_and_counts_it(
    enroll_agent: Callable[..., EnrolledAgent],
    run_forwarder: Callable[[Config], ForwarderThread],
    keys,
    ctx,
):
    """End to end: the forwarder's events endpoint on tcp with CURVE; a stranger's event
    never arrives and shows in status as bus_refused; a listed client's does."""
    port = _free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    agent = enroll_agent(
        sections={
            "bus": {
                "events_endpoint": endpoint,
                "curve_secret_key_file": str(keys["server"]),
                "curve_clients_dir": str(keys["clients"]),
            },
            "forwarder": {"batch_interval": "50ms"},
        }
    )
    fw = run_forwarder(agent.config)
    server_public = auth.read_key_pair(keys["server"]).public
    stranger = client_options(server_public, auth.KeyPair(*zmq.curve_keypair()))
    push = make_socket(ctx, zmq.PUSH, stranger)
    connect(push, endpoint, stranger)
    event = {"module": "intruder", "collector": "x", "data": {"m": 1}}
    with pytest.raises(zmq.Again):
        push.send(msgpack.packb(event))
    push.close(linger=0)
    wait_for(lambda: fw.service.control_handlers()["status"]({}).get("bus_refused"))
    figures = fw.service.control_handlers()["status"]({})
    assert figures["bus_refused"] == {endpoint: figures["bus_refused"][endpoint]} != {}

    alice = client_options(server_public, auth.read_key_pair(keys["alice"]))
    push = make_socket(ctx, zmq.PUSH, alice)
    connect(push, endpoint, alice)
    push.send(msgpack.packb({"module": "alice", "collector": "x", "data": {"m": 2}}))
    push.close()
    agent.server.wait_for_events(1, module="alice", timeout=20)
    assert not agent.server.events(module="intruder")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_sdk_client_takes_explicit_keys(ctx, keys):
    opts = server_options(keys)
    server = bind(make_socket(ctx, zmq.ROUTER, opts), "tcp://127.0.0.1:0", opts)
    endpoint = server.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
    try:
        curve = auth.ClientKeys(opts.curve_public_key, auth.read_key_pair(keys["alice"]))
        with Ingest(endpoint, context=ctx, timeout=5.0, curve=curve) as ingest:
            ingest._sock.send(b"\x90")  # the frame arrives: the handshake was admitted
            assert server.sock.poll(5000)
            identity, frame = server.sock.recv_multipart()
            assert frame == b"\x90"
    finally:
        server.close()


def test_refusals_are_counted_for_the_service_that_bound_the_endpoint(ctx, keys):
    """Services as threads share one context and one ZAP handler: each status shows the
    refusals on its own endpoints only."""
    opts = server_options(keys)
    bound: dict[str, tuple[Binding, str]] = {}

    def bind_as(service: str) -> None:
        mark_service(service)
        bound[service] = _pull(ctx, opts)

    for service in ("forwarder", "commander"):
        thread = threading.Thread(target=bind_as, args=(service,))
        thread.start()
        thread.join()
    try:
        server, endpoint = bound["forwarder"]
        stranger = client_options(opts.curve_public_key, auth.KeyPair(*zmq.curve_keypair()))
        assert not _sends(ctx, endpoint, stranger, server)
        wait_for(lambda: auth.refused_counts(ctx, service="forwarder").get(endpoint))
        assert auth.refused_counts(ctx, service="commander") == {}
    finally:
        for server, _endpoint in bound.values():
            server.close()
