"""The health endpoint under a flood of idle connections from a local user.

Before: a thread per connection and no timeout, so 1,100 idle connections took the agent to
its file limit, and the next `agentbus status` aborted inside libzmq. Now the connections
held are capped (the oldest idle one makes room for a new one), idle ones are closed after
``connection_timeout``, and everything dropped is counted.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import Any

import pytest
import requests

from agent import metrics as am
from agent.health import HealthServer
from core.metrics import Registry
from tests.fixtures.common import wait_for
from tests.fixtures.other_user import needs_root, run_as_nobody

MAX_CONNECTIONS = 8
FLOOD = MAX_CONNECTIONS + 200


def _get(port: int, path: str, timeout: float = 10.0) -> tuple[str, float]:
    """(status line, seconds) of one plain HTTP request."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.split(b"\r\n", 1)[0].decode(), time.monotonic() - start


def _flood_and_ask(port: int, n: int, idle_timeout: float) -> dict[str, Any]:
    """As nobody: open ``n`` idle connections, ask /health, then see the idle ones closed."""
    conns = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(n)]
    status, took = _get(port, "/health")
    # Every idle connection must end (closed to make room, or at its timeout): EOF on read.
    open_ones = set(conns)
    deadline = time.monotonic() + idle_timeout + 5
    while open_ones and time.monotonic() < deadline:
        ready, _, _ = select.select(list(open_ones), [], [], 0.5)
        for sock in ready:
            try:
                ended = sock.recv(1) == b""
            except OSError:
                ended = True
            if ended:
                open_ones.discard(sock)
                sock.close()
    still_open = len(open_ones)
    for sock in open_ones:
        sock.close()
    return {"status": status, "took": took, "still_open": still_open}


@pytest.fixture
def health(make_config):
    servers: list[HealthServer] = []

    def start(**section: Any) -> tuple[HealthServer, Registry, int]:
        config = make_config({"health": {"enabled": True, "listen": "127.0.0.1:0", **section}})
        metrics = Registry(am.AGENT)
        server = HealthServer(config, dict, metrics)
        server.start()
        servers.append(server)
        return server, metrics, int(server.address.rsplit(":", 1)[1])

    yield start
    for server in servers:
        server.stop()


@needs_root
@pytest.mark.timeout(60)
def test_a_flood_of_idle_connections_does_not_lock_out_a_scrape(health):
    _server, metrics, port = health(
        max_connections=MAX_CONNECTIONS, workers=2, connection_timeout="1s"
    )

    seen = run_as_nobody(_flood_and_ask, port, FLOOD, 1.0, timeout=40)

    # No services run here: 503 is the right answer, and it came at once.
    assert seen["status"] == "HTTP/1.1 503 Service Unavailable"
    assert seen["took"] < 5.0
    assert seen["still_open"] == 0
    # Every idle connection was closed and counted: beyond the cap by making room (the
    # oldest idle one goes), the rest at their timeout — on a slow machine some reach
    # their timeout before the flood is over, so together they are the whole flood.
    dropped = wait_for(
        lambda: (d := metrics.snapshot()["health_dropped"]).get("timeout") and d, timeout=5
    )
    assert sum(dropped.get(r, 0) for r in ("evicted", "refused", "timeout")) >= FLOOD
    assert dropped.get("evicted", 0) >= 1 and dropped["timeout"] >= 1
    assert metrics.get(am.HEALTH_CONNECTIONS) == FLOOD + 1


def test_idle_connections_are_closed_at_their_timeout(health):
    _server, metrics, port = health(connection_timeout="300ms")
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(b"GET /health HTTP/1.1\r\n")  # never completed
    start = time.monotonic()
    assert sock.recv(1) == b""  # closed by the server
    assert 0.2 < time.monotonic() - start < 3.0
    sock.close()
    wait_for(lambda: metrics.get(am.HEALTH_DROPPED, reason="timeout") == 1)


def test_an_oversized_request_head_is_closed_and_counted(health):
    _server, metrics, port = health()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nX: " + b"a" * 20000)
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass  # closed with unread data: a reset is the same answer
    wait_for(lambda: metrics.get(am.HEALTH_DROPPED, reason="too_large") == 1)


def test_when_every_slot_is_answering_a_new_connection_is_refused(health, monkeypatch):
    server, metrics, port = health(max_connections=1, workers=1)
    gate = threading.Event()
    answer = server._answer
    monkeypatch.setattr(server, "_answer", lambda head: (gate.wait(10), answer(head))[1])
    first = socket.create_connection(("127.0.0.1", port), timeout=10)
    first.sendall(b"GET /nothing HTTP/1.1\r\n\r\n")
    wait_for(lambda: server._answering == 1)
    second = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert second.recv(1) == b""  # closed at once
    second.close()
    gate.set()
    assert first.recv(100).startswith(b"HTTP/1.1 404")
    first.close()
    assert metrics.get(am.HEALTH_DROPPED, reason="refused") == 1


def test_metrics_and_unknown_paths_still_answer(health):
    _server, _metrics, port = health()
    url = f"http://127.0.0.1:{port}"
    assert requests.get(f"{url}/nowhere", timeout=10).status_code == 404
    body = requests.get(f"{url}/metrics", timeout=10).text
    assert 'agentbus_service_up{service="forwarder"} 0.0' in body
    assert requests.post(f"{url}/health", timeout=10).status_code == 405


@pytest.mark.timeout(120)
def test_agent_run_survives_a_flood_on_its_health_endpoint(enrolled_agent, agent_process):
    config, _credentials, _server = enrolled_agent
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    agent = agent_process(
        config,
        health={"enabled": True, "listen": f"127.0.0.1:{port}", "connection_timeout": "2s"},
    )
    flood = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(32 + 200)]
    try:
        status, took = _get(port, "/health")
        assert status == "HTTP/1.1 200 OK" and took < 5.0
        assert agent.status()["summary"]["healthy"]  # the control sockets still answer
        # The idle ones are all closed: evicted at once or at their timeout.
        wait_for(lambda: all(select.select([s], [], [], 0)[0] for s in flood), timeout=10)
        # ... and what the operator sees says so
        counters = agent.status()["services"]["agent"]["counters"]
        assert sum(counters["health_dropped"].values()) >= 200
    finally:
        for sock in flood:
            sock.close()
    assert agent.stop() == 0
