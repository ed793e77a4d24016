"""Forwarder RSS with a backlog of 1,000,000 events on disk (target: <= 60 MB, flat).

    python -m bench.forwarder_memory [-n 1000000] [--plain-install | --dev-venv]

The sink is down (after the forwarder authenticated once); N 300-byte events are pushed
in frames of 100 as fast as the forwarder commits them. The forwarder's RSS is sampled
every 50 ms: idle before, at every quarter of the backlog, the peak while ingesting, once
everything is on disk, and while the backlog drains after the sink comes back.

The project's dev venv has ``cryptography`` (for the reference server); pyjwt imports it
when it is installed, ~10 MB of RSS the forwarder never uses. By default both are measured:
as the dev venv is, and as a plain ``pip install agentbus`` would be (no [server] extra, no
cryptography; ``--plain-install`` / ``--dev-venv`` run only one).
"""

from __future__ import annotations

import argparse
import sys
import time

from bench import runner
from bench.runner import ForwarderUnderTest, frames, push_frames
from bench.sink import Sink

#: frames are built and pushed in slices of this many events (bounded bench memory)
SLICE = 50_000


def measure_one(n: int, plain_install: bool) -> None:
    """One run: print the RSS figures of a forwarder with ``n`` events queued."""
    sink = Sink().start()
    try:
        with ForwarderUnderTest(sink.url, backoff_max="1s", plain_install=plain_install) as fw:
            warmup = frames(100, start=10_000_000)
            push_frames(fw.endpoints.events, warmup)
            sink.wait_events(100, timeout=30)
            sink.stop()
            time.sleep(1.0)  # settle before the idle figure
            idle = fw.rss()
            fw.peak_rss = idle
            marks = []
            started = time.monotonic()
            for first in range(0, n, SLICE):
                push_frames(fw.endpoints.events, frames(min(SLICE, n - first), start=first))
                done = min(first + SLICE, n)  # the last slice may be short (n < SLICE too)
                if done % (n // 4 or 1) == 0 or done >= n:
                    status = fw.wait_status("persisted", done + 100, timeout=120)
                    marks.append((status["queue_events"], fw.rss()))
            status = fw.wait_status("persisted", n + 100, timeout=120)
            ingest_s = time.monotonic() - started
            ingest_peak = fw.peak_rss
            time.sleep(11.0)  # one upkeep round (clear_acked_interval, 10 s by default)
            at_rest = fw.rss()
            queue_bytes = status["queue_bytes"]
            fw.peak_rss = at_rest
            sink.start()
            sink.wait_events(n, timeout=120)
            drain_peak = fw.peak_rss
            after = fw.rss()
    finally:
        sink.stop()
    variant = "plain install, no cryptography" if plain_install else "dev venv"
    print(f"forwarder RSS idle ({variant}): {idle / 1e6:.1f} MB")
    for queued, rss in marks:
        print(f"  {queued:>9,} events queued on disk: RSS {rss / 1e6:.1f} MB")
    print(
        f"forwarder RSS with {n:,} events ({queue_bytes / 1e6:.0f} MB) queued on disk, at rest: "
        f"{at_rest / 1e6:.1f} MB (peak while ingesting at {n / ingest_s:,.0f} events/s: "
        f"{ingest_peak / 1e6:.1f} MB)"
    )
    print(f"peak while draining: {drain_peak / 1e6:.1f} MB; after the drain: {after / 1e6:.1f} MB")
    print(
        f"target <= 60 MB with the backlog at rest ({variant}): "
        f"{'met' if at_rest <= 60e6 else 'NOT met'}",
        flush=True,
    )


def measure(args: argparse.Namespace) -> None:
    if not args.plain_install:
        measure_one(args.n, plain_install=False)
    if not args.dev_venv:
        measure_one(args.n, plain_install=True)


def options(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--plain-install", action="store_true", help="only without cryptography")
    which.add_argument("--dev-venv", action="store_true", help="only as the dev venv is")


if __name__ == "__main__":
    sys.exit(runner.run(measure, __doc__, n=1_000_000, repeat=None, peer=False, options=options))
