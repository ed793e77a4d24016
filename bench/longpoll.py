"""Reference server: many agents holding ``GET /api/v1/commands`` at once.

    python -m bench.longpoll [--agents 500] [--runs 3] [--hold 5]

Per run: start ``agentbus server`` (a subprocess), enroll N agents over the management API
and authenticate each, then with one asyncio client (one keep-alive connection per agent):

1. **hold** — N long-polls open at once; measured: time until the server holds all N, the
   server's RSS and thread count while it does (no thread per poll), and that none returns
   during ``--hold`` seconds;
2. **release** — one admin call queues a command for the group all N agents are in;
   measured: latency from that call to each agent's 200 (p50/p99/max);
3. **timeout** — N polls again with the hold set to 2 s; every one must end in 408.

Any other status or a client error counts as an error; the run fails if there is one.
Prints the figures (median over runs) and the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests

from bench.machine import describe
from tests.fixtures.refserver import RefServer
from tests.refserver.helpers import (
    agent_line,
    enrollment_body,
    management_token,
    stateless_pair,
)

GROUP = "bench"


def enroll_all(url: str, n: int) -> list[tuple[str, str]]:
    """(agent id, comms token) of n new agents in GROUP (their first event says so)."""
    token = management_token(url)
    local = threading.local()

    def one(index: int) -> tuple[str, str]:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        # a UUID v4 id and a name matching ^[\w\-.%]+$: what a 6.0 server (and the strict
        # reference server) accepts
        body = enrollment_body(str(uuid.uuid4()), name=f"longpoll-{index}")
        r = session.post(
            f"{url}/agents", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        r.raise_for_status()
        r = session.post(
            f"{url}/api/v1/authentication",
            json={"uuid": body["id"], "key": body["key"]},
            timeout=30,
        )
        r.raise_for_status()
        agent_token = r.json()["token"]
        events = "\n".join([agent_line(body["id"], [GROUP]), *stateless_pair()])
        r = session.post(
            f"{url}/api/v1/events/stateless",
            data=events.encode(),
            headers={"Authorization": f"Bearer {agent_token}", "Content-Type": "application/json"},
            timeout=30,
        )
        assert r.status_code == 204, r.text
        return body["id"], agent_token

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


class Connection:
    """One agent's keep-alive HTTP/1.1 connection, spoken directly over asyncio streams.

    A hand-written client on purpose: general async HTTP clients pay per-request costs that
    grow with the number of pooled connections, and would measure themselves, not the server.
    """

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.request = (
            f"GET /api/v1/commands HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {token}\r\nUser-Agent: agentbus-bench/1\r\n\r\n"
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def poll(self) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(self.request)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def poll_all(connections: list[Connection]) -> list[tuple[int, float]]:
    """One poll per agent at once → (status or -1 on a client error, monotonic end time)."""

    async def poll(conn: Connection) -> tuple[int, float]:
        try:
            status = await conn.poll()
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
            print(f"  client error: {type(exc).__name__}: {exc}", file=sys.stderr)
            conn.writer = None
            status = -1
        return status, time.monotonic()

    return await asyncio.gather(*(poll(conn) for conn in connections))


async def one_run(server: RefServer, n: int, hold: float) -> dict[str, float]:
    agents = enroll_all(server.url, n)
    proc = psutil.Process(server.pid)
    connections = [Connection("127.0.0.1", server.port, token) for _, token in agents]
    try:
        # 1. hold
        server.set_command_hold(600)
        started = time.monotonic()
        polls = asyncio.ensure_future(poll_all(connections))
        while server.admin.health()["waiting_polls"] < n:
            if polls.done():
                raise RuntimeError(f"polls ended early: {polls.result()[:5]}")
            await asyncio.sleep(0.05)
        ramp = time.monotonic() - started
        cpu_before = sum(proc.cpu_times()[:2])
        await asyncio.sleep(hold)
        cpu_held = sum(proc.cpu_times()[:2]) - cpu_before
        held = server.admin.health()["waiting_polls"]
        rss_mb = proc.memory_info().rss / 1e6
        threads = proc.num_threads()
        if polls.done() or held != n:
            raise RuntimeError(f"only {held} of {n} polls still held after {hold}s")
        # 2. release
        released_at = time.monotonic()
        ids = await asyncio.to_thread(server.queue_command, group=GROUP, name="fetch-config")
        results = await polls
        assert len(ids) == n
        ok = [end - released_at for status, end in results if status == 200]
        errors = sum(1 for status, _ in results if status != 200)
        latencies = sorted(ok)
        # 3. timeout wave
        server.set_command_hold(2)
        started = time.monotonic()
        results = await poll_all(connections)
        wave = time.monotonic() - started
        errors += sum(1 for status, _ in results if status != 408)
    finally:
        for conn in connections:
            conn.close()
    return {
        "ramp_s": ramp,
        "rss_mb": rss_mb,
        "threads": threads,
        "cpu_while_held_s": cpu_held,
        "release_p50_ms": 1000 * latencies[len(latencies) // 2],
        "release_p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1],
        "release_max_ms": 1000 * latencies[-1],
        "timeout_wave_s": wave,
        "errors": errors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hold", type=float, default=5.0, help="seconds all polls are held")
    args = parser.parse_args()
    print(describe())
    print(f"long-polls: {args.agents} agents, held {args.hold:.0f} s, {args.runs} run(s)")
    runs = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="ab-longpoll-") as tmp:
            server = RefServer(Path(tmp) / "data", command_hold=600, key_hash_rounds=1000)
            server.start()
            try:
                figures = asyncio.run(one_run(server, args.agents, args.hold))
            finally:
                server.stop()
        runs.append(figures)
        print(
            f"run {i + 1}: ramp {figures['ramp_s']:.2f} s | server RSS {figures['rss_mb']:.0f} MB,"
            f" {figures['threads']:.0f} threads, CPU {figures['cpu_while_held_s']:.2f} s while"
            f" holding | release p50 {figures['release_p50_ms']:.0f} ms p99"
            f" {figures['release_p99_ms']:.0f} ms max {figures['release_max_ms']:.0f} ms |"
            f" 408 wave {figures['timeout_wave_s']:.2f} s | errors {figures['errors']:.0f}",
            flush=True,
        )
    median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    total_errors = sum(r["errors"] for r in runs)
    print(
        f"median: {args.agents} polls held at once, ramp {median['ramp_s']:.2f} s,"
        f" server RSS {median['rss_mb']:.0f} MB, {median['threads']:.0f} threads,"
        f" release p50 {median['release_p50_ms']:.0f} ms p99 {median['release_p99_ms']:.0f} ms,"
        f" 408 wave {median['timeout_wave_s']:.2f} s (hold 2 s), errors {total_errors:.0f}"
    )
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 1 if total_errors else 0


if __name__ == "__main__":
    sys.exit(main())
