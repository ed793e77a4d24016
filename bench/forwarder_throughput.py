"""Durable end-to-end stateless throughput: agentbus forwarder vs syslog-ng, same run.

    python -m bench.forwarder_throughput [-n 300000] [--repeat 3] [--no-peer]

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

from bench import runner
from bench.peer_syslog_ng import run_throughput as peer_throughput
from bench.runner import ForwarderUnderTest, push_frames
from bench.sink import Sink


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


def median(r: dict[str, Any]) -> str:
    return (
        f"{r['events_per_s']:,.0f} events/s, all runs {r['all_events_per_s']}, "
        f"peak RSS {r['peak_rss_mb']:.1f} MB"
    )


def measure(args: argparse.Namespace) -> None:
    payload = runner.frames(args.n)
    runner.compare(
        args,
        "durable throughput",
        lambda: run_agentbus(args.n, payload, batch_interval="100ms"),
        lambda: peer_throughput(args.n),
        run_ours=lambda r: (
            f"{r['events_per_s']:,.0f} events/s ({r['events']:,}/{r['expected']:,} in "
            f"{r['seconds']:.2f} s, {r['requests']} requests, push {r['push_seconds']:.2f} s, "
            f"peak RSS {r['peak_rss_mb']:.1f} MB, CPU forwarder {r['cpu_s']:.2f} s / sink "
            f"{r['sink_cpu_s']:.2f} s)"
        ),
        run_peer=lambda p: f"{p['events_per_s']:,.0f} events/s (RSS {p['peak_rss_mb']:.1f} MB)",
        median_ours=median,
        median_peer=median,
    )


if __name__ == "__main__":
    sys.exit(runner.run(measure, __doc__, n=300_000))
