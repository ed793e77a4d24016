"""Helpers of the comms tests: JWTs like the server's, a fake clock, captured log lines."""

from __future__ import annotations

import time
from collections.abc import Iterator
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
