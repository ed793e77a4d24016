"""Fault injection and request counting, as the outermost ASGI layer.

A :class:`FaultRule` makes the server misbehave for requests whose path starts with ``path``
(default: every request outside ``/admin``): answer ``status`` (with ``Retry-After`` when
asked), wait ``delay`` seconds first, or drop the connection without an answer. ``max_body``
limits the rule to requests whose body is larger (413 by default). A rule lasts ``count``
matching requests, ``seconds`` from now, or until cleared. Off by default. ``message`` is
the text of the injected error (e.g. 403 ``Couldn't connect to the indexer: connection
refused``, the real server's words when its indexer is down), in the body shape of the API
the path belongs to.

The same layer counts every request by (method, path, status) for the admin API; a dropped
connection counts with status 0.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from refserver.errors import is_management, problem_body
from refserver.state import Stats

ADMIN_PREFIX = "/admin"


@dataclass
class FaultRule:
    status: int | None = None
    count: int | None = None
    seconds: float | None = None
    retry_after: float | None = None
    delay: float | None = None
    drop: bool = False
    max_body: int | None = None
    path: str | None = None
    #: the error text of an injected status (default ``Injected fault``; 413: its phrase)
    message: str | None = None
    #: monotonic deadline, set from ``seconds`` when the rule is added
    until: float | None = field(default=None, repr=False)
    hits: int = 0

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> FaultRule:
        known = {
            "status",
            "count",
            "seconds",
            "retry_after",
            "delay",
            "drop",
            "max_body",
            "path",
            "message",
        }
        unknown = set(body) - known
        if unknown:
            raise ValueError(f"unknown fault option(s): {', '.join(sorted(unknown))}")
        message = body.get("message")
        if message is not None and not isinstance(message, str):
            raise ValueError("message must be a string")
        rule = cls(**body)
        if rule.max_body is not None and rule.status is None:
            rule.status = 413
        if rule.status is None and not rule.drop and rule.delay is None:
            raise ValueError("a fault needs status, drop or delay")
        if rule.message is not None and rule.status is None:
            raise ValueError("message needs status (it is the text of the injected error)")
        if rule.status is not None and not 100 <= int(rule.status) <= 599:
            raise ValueError("status must be an HTTP status")
        if rule.count is not None and rule.count < 1:
            raise ValueError("count must be at least 1")
        if rule.seconds is not None:
            rule.until = time.monotonic() + float(rule.seconds)
        return rule

    def describe(self) -> dict[str, Any]:
        out = {
            k: v
            for k, v in (
                ("status", self.status),
                ("count", self.count),
                ("seconds", self.seconds),
                ("retry_after", self.retry_after),
                ("delay", self.delay),
                ("drop", self.drop or None),
                ("max_body", self.max_body),
                ("path", self.path),
                ("message", self.message),
            )
            if v is not None
        }
        out["hits"] = self.hits
        return out

    def expired(self, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return True
        return self.count is not None and self.hits >= self.count

    def matches(self, path: str, body_size: int | None) -> bool:
        if self.path is not None:
            if not path.startswith(self.path):
                return False
        elif path.startswith(ADMIN_PREFIX):
            return False
        if self.max_body is not None:
            return body_size is not None and body_size > self.max_body
        return True


class Faults:
    """The active rules; admin handlers and the middleware share it."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def active(self) -> list[FaultRule]:
        now = time.monotonic()
        with self._lock:
            self._rules = [r for r in self._rules if not r.expired(now)]
            return list(self._rules)

    def take(self, path: str, body_size: int | None) -> FaultRule | None:
        """The rule this request falls under (counting the hit), if any."""
        now = time.monotonic()
        with self._lock:
            self._rules = [r for r in self._rules if not r.expired(now)]
            for rule in self._rules:
                if rule.matches(path, body_size):
                    rule.hits += 1
                    return rule
        return None


def faults_of(request: Request) -> Faults:
    faults: Faults = request.app.state.faults
    return faults


class FaultMiddleware:
    """Wraps the whole app: applies faults, counts requests by status."""

    def __init__(self, app: ASGIApp, faults: Faults, stats: Stats) -> None:
        self.app = app
        self.faults = faults
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        counted = not path.startswith(ADMIN_PREFIX)
        status_seen = 0

        async def counting_send(message: Message) -> None:
            nonlocal status_seen
            if message["type"] == "http.response.start":
                status_seen = int(message["status"])
            await send(message)

        rule = self.faults.take(path, _content_length(scope))
        try:
            if rule is None:
                await self.app(scope, receive, counting_send)
                return
            if rule.delay:
                await asyncio.sleep(rule.delay)
            if rule.drop:
                await _drop(receive)
                return
            if rule.status is None:
                await self.app(scope, receive, counting_send)
                return
            await _drain(receive)
            await _answer(rule, path, counting_send)
        finally:
            if counted:
                self.stats.requests[(method, path, status_seen)] += 1


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _answer(rule: FaultRule, path: str, send: Send) -> None:
    assert rule.status is not None
    message = rule.message
    if message is None:
        message = "Request Entity Too Large" if rule.status == 413 else "Injected fault"
    if is_management(path):
        body = problem_body(rule.status, message)
    else:
        body = orjson.dumps({"message": message, "code": rule.status})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if rule.retry_after is not None:
        headers.append((b"retry-after", _seconds(rule.retry_after).encode()))
    await send({"type": "http.response.start", "status": rule.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _drain(receive: Receive) -> None:
    """Read and discard the request body, so the client can read the answer and keep the
    connection (an unread body makes the server reset the connection mid-upload)."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


async def _drop(receive: Receive) -> None:
    """Close the TCP connection without an answer (the client sees a reset or EOF).

    uvicorn passes its request cycle's bound ``receive``; the cycle holds the transport.
    """
    cycle = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionAbortedError("fault injection: dropping the connection")
    transport.abort()
    # Let the server see the connection gone before we return without an answer.
    await asyncio.sleep(0)
    await asyncio.sleep(0)
