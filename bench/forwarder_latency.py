"""Latency at 1,000 events/s: collector send → sink receipt, agentbus vs syslog-ng.

    python -m bench.forwarder_latency [--rate 1000] [--seconds 10] [--no-peer]

A steady producer PUSHes 10 events every 10 ms, each stamped with its send time
(events.py); the sink records its receipt time per event. p50/p99/max of the difference.
agentbus runs with its default ``batch_interval`` (1 s; target p99 ≤ 1.1 s) and with
100 ms (syslog-ng's ``batch-timeout`` in the peer run, for a like-for-like figure).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgpack
import zmq

from bench import runner
from bench.events import bus_event
from bench.peer_syslog_ng import run_latency as peer_latency
from bench.runner import ForwarderUnderTest
from bench.sink import Sink


def run_agentbus(rate: int, seconds: float, **options: Any) -> dict[str, Any]:
    n = int(rate * seconds)
    with Sink(latency=True) as sink, ForwarderUnderTest(sink.url, **options) as fw:
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 10_000)
        sock.connect(fw.endpoints.events)

        def send(first: int, last: int, now: float) -> None:
            batch = [bus_event(q, sent=now) for q in range(first, last)]
            sock.send(msgpack.packb(batch, use_bin_type=True))

        runner.paced(n, rate, send)
        sock.close()
        sink.wait_events(n, timeout=60 + seconds)
        stats = sink.stats(samples=True)
        rss = fw.peak_rss
    figures = runner.latency_figures(stats)
    return {"rate": rate, "expected": n, "peak_rss_mb": rss / 1e6, "options": options, **figures}


def _line(who: str, r: dict[str, Any]) -> str:
    return (
        f"{who} latency at {r['rate']:,} events/s: p50 {r['p50_ms']:.0f} ms, p99 "
        f"{r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms ({r['distinct']:,}/{r['expected']:,} events)"
    )


def measure(args: argparse.Namespace) -> None:
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


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)


if __name__ == "__main__":
    sys.exit(runner.run(measure, __doc__, repeat=None, options=options))
