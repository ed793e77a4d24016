"""A hostile server on a loopback port: answers the agent with whatever a test scripts.

Every path answers what ``server.routes[path]`` writes (a function of the request
handler); ``/api/v1/authentication``, unless routed, answers a valid token, so the comms
client gets past its token manager. Answers for the attacks of the tests:

- :func:`fixed` — a body with its true ``Content-Length`` (any headers, e.g. a gzip bomb
  declared ``Content-Encoding: gzip``);
- :func:`declared` — a ``Content-Length`` that lies: it says ``length``, sends ``body``;
- :func:`until_closed` — no length at all, ``chunk`` written until the client hangs up;
- :func:`chunked_forever` — ``Transfer-Encoding: chunked``, chunks until the client hangs up;
- :func:`streamed` — an exact body in any of the three framings (for the fuzz tests).

Every request is recorded (method, path, headers) and so is every byte written, so a test
can tell how much the server managed to push before the agent hung up.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.comms.helpers import make_jwt

Route = Callable[[BaseHTTPRequestHandler], None]
#: a writer never pushes more than this, whatever happens (a test must end)
SAFETY_LIMIT = 2 * 1024**3


def gzip_bomb(inflated: int = 1024**3) -> bytes:
    """About ``inflated / 1000`` bytes of gzip that inflate to ``inflated`` zero bytes.

    Concatenated gzip members (valid gzip, read by every decoder), one per MiB of output:
    cheap to build, unlike compressing a gigabyte.
    """
    member = gzip.compress(bytes(1024**2), 9)
    return member * max(1, inflated // 1024**2)


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the agent hanging up mid-answer is the point of these tests


class HostileServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.written = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split("?", 1)[0]
                outer.requests.append((self.command, path, dict(self.headers.items())))
                route = outer.routes.get(path)
                if route is None and path == "/api/v1/authentication":
                    route = fixed(json.dumps({"token": make_jwt()}).encode())
                if route is None:
                    fixed(b'{"message": "no route"}', status=404)(self)
                    return
                route(self)

            do_GET = do_POST = _any  # noqa: N815 - http.server's naming

            def log_message(self, *_args: object) -> None:
                pass

            def write(self, data: bytes) -> None:
                self.wfile.write(data)
                outer.written += len(data)

        self.httpd = _Quiet(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def headers_of(self, path: str) -> list[dict[str, str]]:
        return [h for _m, p, h in self.requests if p == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def fixed(body: bytes, headers: dict[str, str] | None = None, *, status: int = 200) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for name, value in {**(headers or {}), "Content-Length": str(len(body))}.items():
            h.send_header(name, value)
        h.end_headers()
        _write(h, body)

    return route


def declared(length: int, body: bytes = b"", *, status: int = 200) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Length", str(length))
        h.send_header("Connection", "close")
        h.end_headers()
        _write(h, body)
        h.close_connection = True

    return route


def until_closed(chunk: bytes = b"x" * 65536, *, status: int = 200) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        _pour(h, lambda: chunk)

    return route


def chunked_forever(chunk: bytes = b"y" * 65536, *, status: int = 200) -> Route:
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.close_connection = True
        _pour(h, lambda: frame)

    return route


def streamed(body: bytes, framing: str, piece: int = 4096, *, status: int = 200) -> Route:
    """``body`` exactly, framed by ``length`` (Content-Length), ``close`` (no length, the
    end of the connection ends it) or ``chunked`` (chunks of ``piece`` bytes)."""
    if framing == "length":
        return fixed(body, status=status)

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        if framing == "chunked":
            h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        step = max(1, piece)
        for at in range(0, len(body), step):
            part = body[at : at + step]
            _write(
                h, f"{len(part):x}\r\n".encode() + part + b"\r\n" if framing == "chunked" else part
            )
        if framing == "chunked":
            _write(h, b"0\r\n\r\n")

    return route


def _write(h: BaseHTTPRequestHandler, data: bytes) -> None:
    try:
        h.write(data)  # type: ignore[attr-defined]
    except OSError:
        h.close_connection = True  # the agent hung up: what we wanted to see


def _pour(h: BaseHTTPRequestHandler, piece: Callable[[], bytes]) -> None:
    sent = 0
    try:
        while sent < SAFETY_LIMIT:
            data = piece()
            h.write(data)  # type: ignore[attr-defined]
            sent += len(data)
    except OSError:
        pass
