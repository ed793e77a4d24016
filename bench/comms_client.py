"""comms client: the cost of a token, and POST throughput with and without keep-alive.

    python -m bench.comms_client [--seconds 5] [--runs 3]

- ``token()`` fast path: ns per call (every request of the forwarder calls it).
- ``ServerClient.post_events`` of ~1 MB stateless bodies (300-byte events, bench/events.py)
  to the loopback sink (bench/sink.py, its own process): requests/s, events/s, MB/s with the
  kept-alive session, 1 and 4 threads, and with a new connection per request (what the C++
  agent design does) for comparison. Median of runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time

from bench.events import event_data
from bench.machine import describe
from bench.sink import Sink
from comms.api import ServerClient
from comms.credentials import Credentials
from comms.metadata import agent_line
from comms.tokens import TokenManager
from core.config import config_from_dict

FACTS = {"hostname": "bench", "architecture": "x86_64", "ip": ["192.0.2.1"],
         "os": {"name": "Debian GNU/Linux", "type": "Linux", "version": "12"}}  # fmt: skip
CREDS = Credentials(uuid="0190a6d2-0000-4000-8000-000000000001", key="K" * 32, name="bench",
                    server_url="http://127.0.0.1:1")  # fmt: skip


def body_of(target_bytes: int) -> tuple[bytes, int]:
    import orjson

    lines = [agent_line(CREDS, FACTS)]
    size, n = len(lines[0]), 0
    header = b'{"collector":"file","module":"logcollector"}'
    while size < target_bytes:
        data = orjson.dumps(event_data(n))
        lines += [header, data]
        size += len(header) + len(data) + 2
        n += 1
    return b"\n".join(lines), n


def run_posts(client_of, threads: int, seconds: float, body: bytes) -> int:  # type: ignore[no-untyped-def]
    done = [0] * threads
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        client = client_of()
        while time.monotonic() < stop:
            reply = client.post_events("stateless", body)
            assert reply.status == 204, reply.status
            done[i] += 1

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(done)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory() as tmp, Sink() as sink:
        config = config_from_dict({"agent": {"data_dir": tmp, "server_url": sink.url},
                                   "log": {"level": "WARNING"}})  # fmt: skip
        from core.logs import setup_logging

        setup_logging(config.log, "bench")
        tokens = TokenManager(config, CREDS)
        tokens.token()
        n = 1_000_000
        t0 = time.perf_counter()
        for _ in range(n):
            tokens.token()
        print(f"token() fast path: {(time.perf_counter() - t0) / n * 1e9:.0f} ns/call")

        body, events = body_of(1024 * 1024)
        print(f"body: {len(body) / 1e6:.2f} MB, {events} events of ~300 B")
        shared = ServerClient(config, tokens, pool_size=8)

        def fresh() -> ServerClient:
            return shared

        class NoKeepAlive:
            def post_events(self, kind: str, b: bytes):  # type: ignore[no-untyped-def]
                c = ServerClient(config, tokens)  # new session: new TCP connection
                try:
                    return c.post_events(kind, b)  # type: ignore[arg-type]
                finally:
                    c.session.close()

        cases = [("keep-alive, 1 thread", fresh, 1), ("keep-alive, 4 threads", fresh, 4),
                 ("new connection per request, 1 thread", NoKeepAlive, 1)]  # fmt: skip
        for name, factory, threads in cases:
            rates = []
            for _ in range(args.runs):
                posts = run_posts(factory, threads, args.seconds, body)
                rates.append(posts / args.seconds)
            r = statistics.median(rates)
            print(f"{name}: {r:.1f} req/s, {r * events:,.0f} events/s, "
                  f"{r * len(body) / 1e6:.0f} MB/s (median of {args.runs})")  # fmt: skip
        small, small_events = body_of(2000)
        for name, factory in [("keep-alive", fresh), ("new connection", NoKeepAlive)]:
            posts = run_posts(factory, 1, args.seconds, small)
            print(f"small bodies ({small_events} events), {name}: {posts / args.seconds:.0f} req/s")


if __name__ == "__main__":
    main()
