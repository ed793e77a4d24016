"""Durable end-to-end stateless throughput: agentbus forwarder vs syslog-ng, same run.

    python bench/forwarder_throughput.py [-n 300000] [--repeat 3]

agentbus: N 300-byte events (events.py) PUSHed to the forwarder's events socket in frames
of 100 (pre-encoded; a blocked send waits), each chunk committed to SQLite (fsync) before
it is sent, batches of up to 1 MB POSTed to the loopback sink (sink.py). Figure: N / (the
sink's last receipt − the first frame sent). The forwarder runs as its own process
(``agentbus forwarder``) with its default settings except ``batch_interval = 100ms``, the
same batch timeout as the syslog-ng peer's ``batch-timeout(100)`` (with the default 1 s
the last partial batch of a run waits up to 1 s, which is a third of a 300,000-event
run); its peak RSS and CPU are reported.

syslog-ng: the same N events as raw lines through ``disk-buffer(reliable(yes))`` →
``http()`` to the same sink (peer_syslog_ng.run_throughput). The ratio agentbus/syslog-ng
is printed per pair of runs and for the medians.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from _forwarder import ForwarderUnderTest, frames, median_run, push_frames
from machine import describe
from peer_syslog_ng import run_throughput as peer_throughput
from sink import Sink


def run_agentbus(n: int, payload: list[bytes], **options: Any) -> dict[str, Any]:
    with Sink() as sink, ForwarderUnderTest(sink.url, **options) as fw:
        cpu, sink_cpu = fw.cpu_seconds(), sink.cpu_seconds()
        started = push_frames(fw.endpoints.events, payload)
        pushed = time.time()
        stats = sink.wait_events(n, timeout=60 + n / 2000)
        cpu, sink_cpu = fw.cpu_seconds() - cpu, sink.cpu_seconds() - sink_cpu
        elapsed = stats["last_ts"] - started
        status = fw.status()
        return {
            "events": stats["events"],
            "expected": n,
            "seconds": elapsed,
            "events_per_s": n / elapsed,
            "push_seconds": pushed - started,
            "requests": stats["requests"],
            "bad_requests": stats["bad_requests"],
            "peak_rss_mb": fw.peak_rss / 1e6,
            "cpu_s": cpu,
            "sink_cpu_s": sink_cpu,
            "chunks_per_s": None,
            "acked": status.get("acked"),
        }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true", help="agentbus only")
    args = parser.parse_args(argv)
    print(describe())
    payload = frames(args.n)
    ours: list[dict[str, Any]] = []
    peers: list[dict[str, Any]] = []
    for i in range(args.repeat):
        r = run_agentbus(args.n, payload, batch_interval="100ms")
        ours.append(r)
        line = (
            f"run {i + 1}: agentbus {r['events_per_s']:,.0f} events/s "
            f"({r['events']:,}/{r['expected']:,} in {r['seconds']:.2f} s, {r['requests']} requests, "
            f"push {r['push_seconds']:.2f} s, peak RSS {r['peak_rss_mb']:.1f} MB, CPU forwarder {r['cpu_s']:.2f} s / sink "
            f"{r['sink_cpu_s']:.2f} s)"
        )
        if not args.no_peer:
            p = peer_throughput(args.n)
            if "skipped" in p:
                line += f"; syslog-ng skipped: {p['skipped']}"
            else:
                peers.append(p)
                line += (
                    f"; syslog-ng {p['events_per_s']:,.0f} events/s (RSS {p['peak_rss_mb']:.1f} MB)"
                    f"; ratio {r['events_per_s'] / p['events_per_s']:.2f}x"
                )
        print(line, flush=True)
    mine = median_run(ours, "events_per_s")
    print(
        f"agentbus forwarder durable throughput (median of {args.repeat}): "
        f"{mine['events_per_s']:,.0f} events/s, all runs {mine['all_events_per_s']}, "
        f"peak RSS {mine['peak_rss_mb']:.1f} MB"
    )
    if peers:
        peer = median_run(peers, "events_per_s")
        print(
            f"syslog-ng durable throughput (median of {len(peers)}): "
            f"{peer['events_per_s']:,.0f} events/s, all runs {peer['all_events_per_s']}, "
            f"peak RSS {peer['peak_rss_mb']:.1f} MB"
        )
        print(f"ratio agentbus / syslog-ng: {mine['events_per_s'] / peer['events_per_s']:.2f}x")
    print(describe())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
