"""Fairness on the acknowledged path: a polite client's ack delay while another floods.

    python -m bench.ingest_fairness [--seconds 20] [--repeat 3] [--flood-bytes 4000000]

One forwarder (a child process) against the loopback sink. The **flooder** is a raw DEALER
on the ingest socket that sends big acknowledged batches (just under
``bus.max_message_bytes``) as fast as the forwarder takes them, never waiting for an
answer before the next send (its replies are read as they come). The **polite** client is
the project's own :class:`bus.client.Ingest`, sending one acknowledged event every 100 ms
and timing each until it is committed (``send_until_committed``: a ``"full"`` answer is
retried, and the retries count in the delay). Figures: p50/p99/max of the polite client's
delay, with the flooder on and (the single-client path) off, and how many flood batches
the forwarder committed meanwhile.

``--flood tiny_maps`` floods frames of ``--flood-bytes`` holding nothing but empty maps
(the flooder's requests are refused; what matters is the forwarder's memory), and
``--flood oversized`` frames of twice ``bus.max_message_bytes``.

``--stall S`` makes the disk stall: every 2 s another connection holds the stateless
queue's write lock for S seconds (a slow or busy disk), so that what waits for the disk
piles up, as it does when a flood outruns the disk.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import threading
import time
from typing import Any

import msgpack
import zmq

from bench import runner
from bench.events import bus_event
from bench.runner import ForwarderUnderTest
from bench.sink import Sink
from bus.client import Ingest

#: between two events of the polite client (seconds)
POLITE_INTERVAL = 0.1


def flood_frame(max_bytes: int) -> bytes:
    """A valid batch of benchmark events just under ``max_bytes``."""
    one = len(msgpack.packb(bus_event(0), use_bin_type=True))
    count = max_bytes // one
    while True:
        frame = msgpack.packb([bus_event(i) for i in range(count)], use_bin_type=True)
        if len(frame) <= max_bytes:
            return frame
        count -= max(1, count // 100)


def attack_frame(kind: str, size: int) -> bytes:
    if kind == "tiny_maps":  # one array of empty maps: ~80 times its size as Python objects
        return b"\xdd" + (size - 5).to_bytes(4, "big") + b"\x80" * (size - 5)
    if kind == "oversized":
        return msgpack.packb(b"x" * 2 * 4 * 1024 * 1024)
    return flood_frame(size)


class Flooder(threading.Thread):
    """Sends ``frame`` on a DEALER as fast as the socket takes it; counts the answers."""

    def __init__(self, endpoint: str, frame: bytes) -> None:
        super().__init__(daemon=True)
        self.endpoint, self.frame = endpoint, frame
        self.stop = threading.Event()
        self.sent = 0
        self.answers: dict[str, int] = {}

    def run(self) -> None:
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN | zmq.POLLOUT)
        try:
            while not self.stop.is_set():
                ready = dict(poller.poll(100)).get(sock, 0)
                if ready & zmq.POLLIN:
                    reply = msgpack.unpackb(sock.recv())
                    key = "ok" if reply.get("ok") else str(reply.get("error"))
                    self.answers[key] = self.answers.get(key, 0) + 1
                if ready & zmq.POLLOUT:
                    sock.send(self.frame, zmq.NOBLOCK, copy=False)
                    self.sent += 1
        finally:
            sock.close(linger=0)


def stall_disk(path: str, stall: float, stop: threading.Event) -> None:
    """Every 2 s, hold the queue's write lock for ``stall`` seconds."""
    while not stop.wait(2.0):
        conn = sqlite3.connect(path, timeout=30)
        try:
            conn.execute("BEGIN IMMEDIATE")
            stop.wait(stall)
            conn.rollback()
        finally:
            conn.close()


def run_once(
    seconds: float, flood_bytes: int, flood: bool, stall: float, kind: str = "events"
) -> dict[str, Any]:
    never, done = threading.Event(), threading.Event()
    with Sink() as sink, ForwarderUnderTest(sink.url) as fw:
        if stall:
            db = str(fw.tmp / "data" / "queue" / "stateless.db")
            threading.Thread(target=stall_disk, args=(db, stall, done), daemon=True).start()
        flooder = Flooder(fw.endpoints.ingest, attack_frame(kind, flood_bytes))
        client = Ingest(fw.endpoints.ingest, timeout=120)
        delays: list[float] = []
        retries = 0
        try:
            if flood:
                flooder.start()
                wait_until = time.monotonic() + 2.0  # let the flood fill every buffer first
                while time.monotonic() < wait_until and flooder.sent < 4:
                    time.sleep(0.05)
            end = time.monotonic() + seconds
            seq = 0
            while time.monotonic() < end:
                started = time.monotonic()
                failed: list[str] = []
                result = client.send_until_committed(
                    bus_event(10_000_000 + seq),
                    never,
                    retry_delay=0.05,
                    on_retry=lambda reason, _m, f=failed: f.append(reason),  # type: ignore[misc]
                )
                delays.append(time.monotonic() - started)
                retries += len(failed)
                assert result is not None and result.ok, result
                seq += 1
                time.sleep(max(0.0, POLITE_INTERVAL - (time.monotonic() - started)))
        finally:
            flooder.stop.set()
            done.set()
            if flood:
                flooder.join(10)
            client.close()
        status = fw.status()
        peak_rss = fw.peak_rss
    delays.sort()
    return {
        "flood": flood,
        "events": len(delays),
        "p50_ms": statistics.median(delays) * 1000,
        "p99_ms": delays[min(len(delays) - 1, int(len(delays) * 0.99))] * 1000,
        "max_ms": delays[-1] * 1000,
        "retries": retries,
        "flood_sent": flooder.sent,
        "flood_answers": dict(flooder.answers),
        "flood_mb": flooder.sent * flood_bytes / 1e6,
        "ingest_requests": status.get("ingest_requests"),
        "peak_rss_mb": peak_rss / 1e6,
    }


def _line(r: dict[str, Any]) -> str:
    who = "with a flooder" if r["flood"] else "alone"
    text = (
        f"polite client {who}: ack delay p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
        f"max {r['max_ms']:.1f} ms ({r['events']} events, {r['retries']} 'full' retries); "
        f"forwarder peak RSS {r['peak_rss_mb']:.0f} MB"
    )
    if r["flood"]:
        text += f"; flooder sent {r['flood_sent']} batches, answers {r['flood_answers']}"
    return text


def measure(args: argparse.Namespace) -> None:
    print(f"flood: {args.flood}, {args.flood_bytes:,} bytes a frame")
    if args.stall:
        print(f"the disk stalls {args.stall:g} s every 2 s")
    for flood in (False, True) if args.flood == "events" else (True,):
        runs = []
        for _ in range(args.repeat):
            r = run_once(args.seconds, args.flood_bytes, flood, args.stall, args.flood)
            print("  " + _line(r), flush=True)
            runs.append(r)
        chosen = sorted(runs, key=lambda r: r["p99_ms"])[len(runs) // 2]
        print(f"median of {len(runs)} by p99: {_line(chosen)}", flush=True)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=20.0, help="polite client's run")
    parser.add_argument(
        "--flood-bytes",
        type=int,
        default=4_000_000,
        help="size of a flood batch (the default bus.max_message_bytes is 4 MiB)",
    )
    parser.add_argument("--flood", choices=["events", "tiny_maps", "oversized"], default="events")
    parser.add_argument("--stall", type=float, default=0.0, help="disk stall (seconds)")


if __name__ == "__main__":
    sys.exit(runner.run(measure, __doc__, repeat=3, peer=False, options=_options))
