"""Helpers of the comms tests: JWTs like the server's, a fake clock, captured log lines,
a bare TCP server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import jwt
from loguru import logger

SIGNING_KEY = "test-signing-key-long-enough-for-hs256!"


def make_jwt(iat: float | None = None, lifetime: float | None = 900, **claims: Any) -> str:
    """A JWT with the server's claims; ``lifetime=None`` leaves out ``exp``."""
    now = int(time.time() if iat is None else iat)
    body: dict[str, Any] = {"iss": "wazuh", "aud": "Wazuh Communications API", "iat": now}
    if lifetime is not None:
        body["exp"] = now + int(lifetime)
    body.update(claims)
    return jwt.encode(body, SIGNING_KEY, algorithm="HS256")


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def captured_logs() -> Iterator[list[str]]:
    """Every log line (all levels) written while the block runs."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="TRACE", format="{message}")
    try:
        yield lines
    finally:
        logger.remove(sink)


@contextmanager
def tcp_server(host: str, handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A TCP server on ``host`` (port chosen) that hands each connection to ``handle`` in
    its accepting thread; yields the port. The accept loop looks at its stop flag every
    0.2 s, only while the test runs."""
    server = socket.create_server((host, 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            handle(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        server.close()
