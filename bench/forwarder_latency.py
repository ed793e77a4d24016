"""Latency at 1,000 events/s: collector send → sink receipt, agentbus vs syslog-ng.

    python bench/forwarder_latency.py [--rate 1000] [--seconds 10]

A steady producer PUSHes 10 events every 10 ms, each stamped with its send time
(events.py); the sink records its receipt time per event. p50/p99/max of the difference.
agentbus runs with its default ``batch_interval`` (1 s; target p99 ≤ 1.1 s) and with
100 ms (syslog-ng's ``batch-timeout`` in the peer run, for a like-for-like figure).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import msgpack
import zmq
from _forwarder import ForwarderUnderTest
from events import bus_event
from machine import describe
from peer_syslog_ng import run_latency as peer_latency
from sink import Sink


def run_agentbus(rate: int, seconds: float, **options: Any) -> dict[str, Any]:
    n = int(rate * seconds)
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    with Sink(latency=True) as sink, ForwarderUnderTest(sink.url, **options) as fw:
        sock = zmq.Context.instance().socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 10_000)
        sock.connect(fw.endpoints.events)
        start = time.monotonic()
        for i, first in enumerate(range(0, n, per_tick)):
            delay = start + i * tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = time.time()
            batch = [bus_event(q, sent=now) for q in range(first, min(first + per_tick, n))]
            sock.send(msgpack.packb(batch, use_bin_type=True))
        sock.close()
        sink.wait_events(n, timeout=60 + seconds)
        stats = sink.stats(samples=True)
        rss = fw.peak_rss
    lat = sorted(recv - sent for _, sent, recv in stats["samples"])
    return {
        "rate": rate,
        "events": stats["events"],
        "distinct": stats["distinct"],
        "expected": n,
        "p50_ms": lat[len(lat) // 2] * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        "max_ms": lat[-1] * 1000,
        "peak_rss_mb": rss / 1e6,
        "options": options,
    }


def _line(who: str, r: dict[str, Any]) -> str:
    return (
        f"{who} latency at {r['rate']:,} events/s: p50 {r['p50_ms']:.0f} ms, p99 "
        f"{r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms ({r['distinct']:,}/{r['expected']:,} events)"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-peer", action="store_true", help="agentbus only")
    args = parser.parse_args(argv)
    print(describe())
    default = run_agentbus(args.rate, args.seconds)
    print(_line("agentbus (batch_interval 1 s, the default)", default), flush=True)
    print(
        f"  target: p99 <= batch_interval + 100 ms = 1100 ms -> "
        f"{'met' if default['p99_ms'] <= 1100 else 'NOT met'}"
    )
    short = run_agentbus(args.rate, args.seconds, batch_interval="100ms")
    print(_line("agentbus (batch_interval 100 ms)", short), flush=True)
    print(f"  target: p99 <= 200 ms -> {'met' if short['p99_ms'] <= 200 else 'NOT met'}")
    if not args.no_peer:
        p = peer_latency(args.rate, args.seconds)
        if "skipped" in p:
            print(f"syslog-ng skipped: {p['skipped']}")
        else:
            print(_line(f"syslog-ng (batch-timeout {p['batch_timeout_ms']} ms)", p))
    print(describe())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
