"""Backlog drain after an outage: agentbus forwarder vs syslog-ng, same run.

    python -m bench.forwarder_drain [-n 300000] [--repeat 3] [--no-peer]

agentbus: the forwarder first authenticates with the sink, then the sink goes down (its
port stays reserved); N 300-byte events are pushed and committed to the queue (we wait
for the forwarder's ``persisted`` counter); the sink comes back; figure = N / (last
receipt − first receipt) at the sink, and also counted from the sink's restart (that one
includes the forwarder's back-off wait, capped at 1 s here like syslog-ng's time-reopen).
The forwarder's RSS with the backlog on disk is reported. N must span several requests
(~3,000 events per 1 MB body): with one, first and last receipt are the same moment.

syslog-ng: the same through its reliable disk buffer (peer_syslog_ng.run_drain).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from bench import runner
from bench.peer_syslog_ng import run_drain as peer_drain
from bench.runner import ForwarderUnderTest, push_frames
from bench.sink import Sink


def run_agentbus(n: int, payload: list[bytes], warmup: list[bytes]) -> dict[str, Any]:
    sink = Sink().start()
    try:
        with ForwarderUnderTest(sink.url, backoff_max="1s") as fw:
            push_frames(fw.endpoints.events, warmup)  # authenticate while the sink is up
            sink.wait_events(len(warmup), timeout=30)
            sink.stop()
            push_frames(fw.endpoints.events, payload)
            fw.wait_status("persisted", n + len(warmup), timeout=60 + n / 5000)
            queued = fw.status()["queue_events"]
            rss_backlog = fw.rss()
            up = time.time()
            sink.start()
            stats = sink.wait_events(n, timeout=60 + n / 5000)
            from_first = stats["last_ts"] - stats["first_ts"]
            return {
                "events": stats["events"],
                "expected": n,
                "queued_before": queued,
                "seconds_from_first_receipt": from_first,
                "seconds_from_sink_up": stats["last_ts"] - up,
                "events_per_s": n / from_first,
                "events_per_s_from_up": n / (stats["last_ts"] - up),
                "requests": stats["requests"],
                "rss_with_backlog_mb": rss_backlog / 1e6,
                "peak_rss_mb": fw.peak_rss / 1e6,
            }
    finally:
        sink.stop()


def measure(args: argparse.Namespace) -> None:
    payload = runner.frames(args.n)
    warmup = runner.frames(100, start=10_000_000)
    runner.compare(
        args,
        "backlog drain",
        lambda: run_agentbus(args.n, payload, warmup),
        lambda: peer_drain(args.n),
        run_ours=lambda r: (
            f"{r['events_per_s']:,.0f} events/s from first receipt, "
            f"{r['events_per_s_from_up']:,.0f} from sink up ({r['events']:,}/{r['expected']:,}, "
            f"{r['queued_before']:,} queued, {r['requests']} requests, RSS with backlog "
            f"{r['rss_with_backlog_mb']:.1f} MB, peak {r['peak_rss_mb']:.1f} MB)"
        ),
        run_peer=lambda p: (
            f"{p['events_per_s']:,.0f} events/s from first receipt, "
            f"{p['events_per_s_from_up']:,.0f} from sink up"
        ),
        median_ours=lambda r: (
            f"{r['events_per_s']:,.0f} events/s from first receipt "
            f"({r['events_per_s_from_up']:,.0f} from sink up), all runs {r['all_events_per_s']}"
        ),
        median_peer=lambda p: (
            f"{p['events_per_s']:,.0f} events/s from first receipt, "
            f"all runs {p['all_events_per_s']}"
        ),
    )


if __name__ == "__main__":
    sys.exit(runner.run(measure, __doc__, n=300_000))
