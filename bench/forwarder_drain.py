"""Backlog drain after an outage: agentbus forwarder vs syslog-ng, same run.

    python bench/forwarder_drain.py [-n 300000] [--repeat 3]

agentbus: the forwarder first authenticates with the sink, then the sink goes down (its
port stays reserved); N 300-byte events are pushed and committed to the queue (we wait
for the forwarder's ``persisted`` counter); the sink comes back; figure = N / (last
receipt − first receipt) at the sink, and also counted from the sink's restart (that one
includes the forwarder's back-off wait, capped at 1 s here like syslog-ng's time-reopen).
The forwarder's RSS with the backlog on disk is reported.

syslog-ng: the same through its reliable disk buffer (peer_syslog_ng.run_drain).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from _forwarder import ForwarderUnderTest, frames, median_run, push_frames
from machine import describe
from peer_syslog_ng import run_drain as peer_drain
from sink import Sink


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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true", help="agentbus only")
    args = parser.parse_args(argv)
    print(describe())
    payload = frames(args.n)
    warmup = frames(100, start=10_000_000)
    ours: list[dict[str, Any]] = []
    peers: list[dict[str, Any]] = []
    for i in range(args.repeat):
        r = run_agentbus(args.n, payload, warmup)
        ours.append(r)
        line = (
            f"run {i + 1}: agentbus {r['events_per_s']:,.0f} events/s from first receipt, "
            f"{r['events_per_s_from_up']:,.0f} from sink up ({r['events']:,}/{r['expected']:,}, "
            f"{r['queued_before']:,} queued, {r['requests']} requests, RSS with backlog "
            f"{r['rss_with_backlog_mb']:.1f} MB, peak {r['peak_rss_mb']:.1f} MB)"
        )
        if not args.no_peer:
            p = peer_drain(args.n)
            if "skipped" in p:
                line += f"; syslog-ng skipped: {p['skipped']}"
            else:
                peers.append(p)
                line += (
                    f"; syslog-ng {p['events_per_s']:,.0f} events/s from first receipt, "
                    f"{p['events_per_s_from_up']:,.0f} from sink up; "
                    f"ratio {r['events_per_s'] / p['events_per_s']:.2f}x"
                )
        print(line, flush=True)
    mine = median_run(ours, "events_per_s")
    print(
        f"agentbus forwarder backlog drain (median of {args.repeat}): "
        f"{mine['events_per_s']:,.0f} events/s from first receipt "
        f"({mine['events_per_s_from_up']:,.0f} from sink up), all runs {mine['all_events_per_s']}"
    )
    if peers:
        peer = median_run(peers, "events_per_s")
        print(
            f"syslog-ng backlog drain (median of {len(peers)}): {peer['events_per_s']:,.0f} "
            f"events/s from first receipt, all runs {peer['all_events_per_s']}"
        )
        print(f"ratio agentbus / syslog-ng: {mine['events_per_s'] / peer['events_per_s']:.2f}x")
    print(describe())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
