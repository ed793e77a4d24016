"""A fast loopback HTTP sink speaking enough of the server protocol (docs/protocol.md) for agentbus and syslog-ng.

It runs in its own process (one asyncio event loop, HTTP/1.1 keep-alive) so it never
competes with the benchmarked process for the GIL, and it does as little as it can per
request: a stateless body is checked and its events counted with ``bytes.count(b"\\n")``
(``(lines - 1) / 2``), nothing is JSON-decoded.

Endpoints:

- ``POST /api/v1/authentication`` → 200 ``{"token": <HS256 JWT, exp = iat + 900>}``
  (any uuid/key; the agent does not verify the signature).
- ``POST /api/v1/events/stateless`` → 204, counts events. Needs ``Authorization: Bearer``
  (else 403); a body that is not the protocol's NDJSON (no ``{"agent"`` line, trailing
  newline, odd number of header/data lines) → 400, counted in ``bad_requests``.
- ``POST /api/v1/events/stateful`` → 200 ``{"results": [...]}``, one item per event.
- ``GET /_sink/stats`` → counters as JSON; ``?latency=1`` adds ``samples``:
  ``[[seq, sent, received], ...]`` for every stamped event (see events.py).
- ``POST /_sink/reset`` → zero the counters.
- ``POST /_sink/config`` ``{"status": 503 | null, "delay": seconds, "latency": bool}`` →
  answer event posts with that status / after that delay / record latency samples.

Use from a benchmark::

    from bench.sink import Sink
    with Sink(latency=False) as sink:      # starts the process on a free port
        ... point the forwarder at sink.url ...
        stats = sink.wait_events(300_000, timeout=60)
    # stats["events"], ["requests"], ["first_ts"], ["last_ts"] (time.time() of receipt)

``sink.stop()`` then ``sink.start()`` restarts it on the same port (counters start at
zero), which is how an outage is simulated. ``python -m bench.sink`` measures the sink's
own ceiling with a requests client posting 1 MB bodies.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any
from urllib.parse import parse_qs

STATELESS = "/api/v1/events/stateless"
STATEFUL = "/api/v1/events/stateful"
AUTH = "/api/v1/authentication"
COMMANDS = "/api/v1/commands"
#: how long a commands long-poll is held before its empty answer (408), like the server
COMMANDS_HOLD = 600.0
#: the repository root: the sink process runs ``python -m bench.sink`` from there
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: token lifetime the server protocol requires (exp - iat)
TOKEN_SECONDS = 900
#: largest header block accepted before the connection is dropped
MAX_HEAD = 64 * 1024
_REASONS = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    411: "Length Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


# --------------------------------------------------------------------------- server side


class State:
    """Counters and knobs of the sink process."""

    def __init__(self, latency: bool) -> None:
        self.latency = latency
        self.status: int | None = None  # forced answer to event posts
        self.delay = 0.0  # seconds before answering event posts
        self.reset()

    def reset(self) -> None:
        self.events = 0
        self.requests = 0
        self.bytes = 0
        self.stateful_events = 0
        self.stateful_requests = 0
        self.auth_requests = 0
        self.bad_requests = 0
        self.refused = 0  # event posts answered with a forced status
        self.unauthorized = 0
        self.connections = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.samples: list[tuple[int, float, float]] = []
        self.seqs: set[int] = set()

    def snapshot(self, with_samples: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: v for k, v in vars(self).items() if k not in ("samples", "seqs", "latency")
        }
        out["latency"] = self.latency
        out["distinct"] = len(self.seqs)
        out["sampled"] = len(self.samples)
        if with_samples:
            out["samples"] = self.samples
        return out


def _make_token(uuid: str) -> str:
    import jwt  # pyjwt, an agentbus dependency

    now = int(time.time())
    claims = {
        "iss": "wazuh",
        "aud": "Wazuh Communications API",
        "iat": now,
        "exp": now + TOKEN_SECONDS,
        "uuid": uuid,
    }
    return jwt.encode(claims, "bench-sink-secret-of-at-least-32-bytes", algorithm="HS256")


def _stateless_events(body: bytes) -> int | None:
    """Events in a stateless body (docs/protocol.md), or None if its shape is wrong."""
    if not body.startswith(b'{"agent"') or body.endswith(b"\n"):
        return None
    lines = body.count(b"\n") + 1
    if lines < 3 or (lines - 1) % 2:
        return None
    return (lines - 1) // 2


def _stateful_results(body: bytes) -> list[dict[str, Any]] | None:
    lines = body.split(b"\n")
    if len(lines) < 2 or not lines[0].startswith(b'{"agent"'):
        return None
    results = []
    i = 1
    try:
        while i < len(lines):
            head = json.loads(lines[i])
            op = head.get("operation")
            i += 1 if op == "delete" else 2
            verb = {"create": "created", "update": "updated", "delete": "deleted"}.get(op, "noop")
            status = {"create": 201, "update": 200, "delete": 200}.get(op, 400)
            results.append(
                {"index": "wazuh-states", "id": head.get("id"), "result": verb, "status": status}
            )
    except ValueError:
        return None
    return results


class HttpProtocol(asyncio.Protocol):
    """A minimal HTTP/1.1 server connection: Content-Length bodies, keep-alive, 100-continue."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.buf = bytearray()
        self.head: tuple[str, str, dict[str, str]] | None = None
        self.need = 0
        self.busy = False  # a delayed answer is pending; keep the next request buffered
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.state.connections += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._process()

    def _process(self) -> None:
        while not self.busy and self.transport is not None and not self.transport.is_closing():
            if self.head is None:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > MAX_HEAD:
                        self.transport.close()
                    return
                raw = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
                del self.buf[: end + 4]
                method, target, _ = (raw[0].split(" ", 2) + ["", ""])[:3]
                headers = {}
                for line in raw[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    self._reply(411, b"", close=True)
                    return
                self.head = (method, target, headers)
                self.need = int(headers.get("content-length", "0") or 0)
                if (
                    headers.get("expect", "").lower() == "100-continue"
                    and len(self.buf) < self.need
                ):
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if len(self.buf) < self.need:
                return
            body = bytes(self.buf[: self.need])
            del self.buf[: self.need]
            method, target, headers = self.head
            self.head = None
            self._handle(method, target, headers, body)

    def _reply(
        self,
        status: int,
        body: bytes,
        ctype: str = "application/json",
        close: bool = False,
    ) -> None:
        assert self.transport is not None
        head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
        if status != 204:
            head += f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        if close:
            head += "Connection: close\r\n"
        self.transport.write(head.encode() + b"\r\n" + body)
        if close:
            self.transport.close()

    def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        st = self.state
        path, _, query = target.partition("?")
        close = headers.get("connection", "").lower() == "close"
        if path in (STATELESS, STATEFUL) and method == "POST":
            if not headers.get("authorization", "").startswith("Bearer "):
                st.unauthorized += 1
                self._reply(403, b'{"message":"Missing token","code":403}', close=close)
                return
            if st.status is not None:
                st.refused += 1
                self._later(st.status, b'{"message":"sink told to fail","code":1}', close)
                return
            if path == STATELESS:
                n = _stateless_events(body)
                if n is None:
                    st.bad_requests += 1
                    self._reply(400, b'{"message":"bad body","code":400}', close=close)
                    return
                now = time.time()
                if st.first_ts is None:
                    st.first_ts = now
                st.last_ts = now
                st.events += n
                st.requests += 1
                st.bytes += len(body)
                if st.latency:
                    self._sample(body, now)
                self._later(204, b"", close)
                return
            results = _stateful_results(body)
            if results is None:
                st.bad_requests += 1
                self._reply(400, b'{"message":"bad body","code":400}', close=close)
                return
            st.stateful_events += len(results)
            st.stateful_requests += 1
            self._later(
                200, json.dumps({"results": results}, separators=(",", ":")).encode(), close
            )
        elif path == AUTH and method == "POST":
            st.auth_requests += 1
            try:
                uuid = str(json.loads(body or b"{}").get("uuid", "bench"))
            except ValueError:
                uuid = "bench"
            self._reply(200, json.dumps({"token": _make_token(uuid)}).encode(), close=close)
        elif path == COMMANDS and method == "GET":
            # No commands, ever: hold the long-poll like the server does, then 408.
            self.busy = True

            def empty() -> None:
                self.busy = False
                if self.transport is not None and not self.transport.is_closing():
                    self._reply(408, b'{"message":"no commands","code":408}', close=close)
                    self._process()

            asyncio.get_running_loop().call_later(COMMANDS_HOLD, empty)
        elif path == "/_sink/stats":
            with_samples = parse_qs(query).get("latency", ["0"])[0] not in ("0", "")
            self._reply(200, json.dumps(st.snapshot(with_samples)).encode(), close=close)
        elif path == "/_sink/reset" and method == "POST":
            st.reset()
            self._reply(200, b"{}", close=close)
        elif path == "/_sink/config" and method == "POST":
            conf = json.loads(body or b"{}")
            if "status" in conf:
                st.status = conf["status"]
            st.delay = float(conf.get("delay", st.delay))
            st.latency = bool(conf.get("latency", st.latency))
            self._reply(200, b"{}", close=close)
        else:
            self._reply(404, b'{"message":"Not found","code":404}', close=close)

    def _sample(self, body: bytes, now: float) -> None:
        from bench.events import SEQ_SENT_RE

        for seq, sent in SEQ_SENT_RE.findall(body):
            s = int(seq)
            self.state.seqs.add(s)
            t = float(sent)
            if t:
                self.state.samples.append((s, t, now))

    def _later(self, status: int, body: bytes, close: bool) -> None:
        """Answer now, or after the configured delay (holding further requests)."""
        if self.state.delay <= 0:
            self._reply(status, body, close=close)
            return
        self.busy = True

        def answer() -> None:
            self.busy = False
            if self.transport is not None and not self.transport.is_closing():
                self._reply(status, body, close=close)
                self._process()

        asyncio.get_running_loop().call_later(self.state.delay, answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def serve(host: str, port: int, latency: bool) -> None:
    """Run the sink in this process until SIGTERM/SIGINT; prints ``READY <port>`` once bound."""

    async def main() -> None:
        state = State(latency)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: HttpProtocol(state), host, port, reuse_address=True, backlog=1024
        )
        bound = server.sockets[0].getsockname()[1]
        print(f"READY {bound}", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- client side


class Sink:
    """Handle on a sink process: start, stats, wait, stop (and start again on the same port)."""

    def __init__(self, port: int = 0, *, latency: bool = False, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL for the comms API (``agent.server_url``)."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> Sink:
        if self.proc is not None:
            return self
        cmd = [sys.executable, "-m", "bench.sink", "serve", "--host", self.host]
        cmd += ["--port", str(self.port)] + (["--latency"] if self.latency else [])
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=ROOT)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"sink did not start (port {self.port}): {line!r}")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        """Terminate the sink process (the port stays reserved in ``self.port``)."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float:
        """User + system CPU the sink process has used (to show it is not the bottleneck)."""
        import psutil

        assert self.proc is not None
        t = psutil.Process(self.proc.pid).cpu_times()
        return float(t.user + t.system)

    def _call(self, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method="GET" if data is None else "POST"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result

    def stats(self, samples: bool = False) -> dict[str, Any]:
        """Counters: events, requests, bytes, first_ts/last_ts (time.time()), bad_requests, ..."""
        return self._call("/_sink/stats" + ("?latency=1" if samples else ""))

    def reset(self) -> None:
        self._call("/_sink/reset", {})

    def configure(
        self, *, status: int | None = None, delay: float = 0.0, latency: bool | None = None
    ) -> None:
        """Make event posts answer ``status`` (None: normal) after ``delay`` seconds."""
        conf: dict[str, Any] = {"status": status, "delay": delay}
        if latency is not None:
            conf["latency"] = latency
        self._call("/_sink/config", conf)

    def token(self, uuid: str = "bench") -> str:
        """A token as the authentication endpoint would hand out (for a static header)."""
        return _make_token(uuid)

    def wait_events(self, n: int, timeout: float, poll: float = 0.05) -> dict[str, Any]:
        """Poll until at least ``n`` stateless events arrived; returns the last stats.

        Raises TimeoutError (with the stats in the message) if they do not arrive in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["events"] >= n:
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"sink has {stats['events']}/{n} events after {timeout}s")
            time.sleep(poll)

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def agent_line() -> bytes:
    """An agent metadata line (docs/protocol.md), for bodies posted without agentbus."""
    return (
        b'{"agent":{"groups":["default"],"host":{"architecture":"x86_64","hostname":"bench",'
        b'"ip":["127.0.0.1"],"os":{"name":"Debian GNU/Linux","type":"Linux","version":"12"}},'
        b'"id":"0192b6f0-0000-4000-8000-000000000000","name":"bench","type":"Endpoint",'
        b'"version":"bench"}}'
    )


def measure_ceiling(seconds: float = 5.0, body_bytes: int = 1_000_000) -> dict[str, Any]:
    """Post ~1 MB stateless bodies with one requests keep-alive client for ``seconds``."""
    import requests

    from bench.events import EVENT_BYTES, event_data

    header = b'{"module":"logcollector","collector":"file"}'
    pair = header + b"\n" + json.dumps(event_data(1), separators=(",", ":")).encode()
    per_body = max(1, body_bytes // (len(pair) + 1))
    body = agent_line() + b"\n" + b"\n".join([pair] * per_body)
    with Sink() as sink, requests.Session() as session:
        url = sink.url + STATELESS
        headers = {"Authorization": "Bearer " + sink.token(), "Content-Type": "application/json"}
        posts = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            r = session.post(url, data=body, headers=headers)
            if r.status_code != 204:
                raise RuntimeError(f"sink answered {r.status_code}: {r.text}")
            posts += 1
        elapsed = time.perf_counter() - start
        stats = sink.stats()
    assert stats["events"] == posts * per_body, (stats, posts * per_body)
    return {
        "body_bytes": len(body),
        "events_per_body": per_body,
        "event_bytes": EVENT_BYTES,
        "requests_per_s": posts / elapsed,
        "events_per_s": posts * per_body / elapsed,
        "mb_per_s": posts * len(body) / elapsed / 1e6,
    }


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd")
    run = sub.add_parser("serve", help="run the sink in the foreground")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=0)
    run.add_argument("--latency", action="store_true", help="record per-event latency samples")
    ceiling = sub.add_parser("ceiling", help="measure the sink's own ceiling (default)")
    ceiling.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        serve(args.host, args.port, args.latency)
        return 0
    from bench.machine import describe

    result = measure_ceiling(getattr(args, "seconds", 5.0))
    print("sink ceiling (one requests client, keep-alive, 1 MB stateless bodies):")
    print(
        f"  {result['events_per_s']:,.0f} events/s of {result['event_bytes']} bytes, "
        f"{result['requests_per_s']:,.0f} requests/s, {result['mb_per_s']:,.0f} MB/s"
    )
    print(describe())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
