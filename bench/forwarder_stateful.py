"""Stateful delivery rate: a backlog of inventory documents drained to the reference server.

    python -m bench.forwarder_stateful [-n 1000 10000] [--repeat 3] [--stateful-chunk 16384]

For each backlog size and each ``[forwarder] stateful_batch_max_bytes`` (the default
15KB, against the old 1MB): a reference server (``agentbus server``) is started and an
agent enrolled with it; its stateful endpoint answers 503 (an outage) while the forwarder
(its own process) takes N ``inventory``/``packages`` create events (realistic documents
of ~300–600 bytes, valid for the index mapping) from the bus and commits them to its
stateful queue; then the fault is cleared. Figure = N / (last receipt at the server −
the moment the fault was cleared); the forwarder's back-off is 10 ms here, so that is the
drain itself (the backlog is older than ``batch_interval``, as after a real outage, so no
batch waits for its timer). Also printed: requests (200 and 400), quarantined events,
documents stored.

``--stateful-chunk N`` starts the server with ``--stateful-chunk N`` (the 6.0 server's
per-receive-chunk parsing; docs/protocol.md, "Events"): 15KB requests go through, 1MB
ones are refused with 400 and bisected. Off by default (the server's plain parser).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack

from bench import runner
from bench.runner import FRAME_EVENTS, ForwarderUnderTest, push_frames
from comms.credentials import Credentials
from tests.fixtures.common import wait_for
from tests.fixtures.refserver import RefServer
from tests.refserver.helpers import enroll

STATEFUL = "/api/v1/events/stateful"
LIMITS = ("15KB", "1MB")
#: back-off of the forwarder while the endpoint is "down" (each retry sends the batch again)
BACKOFF = "10ms"
SECTIONS = ("libs", "utils", "admin", "net", "python", "devel", "doc", "kernel")


def package_event(agent_id: str, seq: int) -> dict[str, Any]:
    """A packages create event as the inventory collector sends it (~300–600 bytes)."""
    name = f"lib{SECTIONS[seq % 8]}-component-{seq}"
    words = 8 + (seq * 7) % 40  # descriptions of varied length: 300–600-byte documents
    description = " ".join(["shared library and helpers for common tasks"] * (words // 6 + 1))
    return {
        "module": "inventory",
        "collector": "packages",
        "type": "stateful",
        "id": hashlib.sha1(f"{agent_id}:{name}:amd64".encode()).hexdigest(),
        "operation": "create",
        "data": {
            "@timestamp": "2025-01-15T10:00:00.000Z",
            "package": {
                "architecture": "amd64",
                "description": description[: 40 + words * 6],
                "installed": "2024-11-02T08:30:00Z",
                "name": name,
                "path": f"/var/lib/dpkg/info/{name}.list",
                "size": 40_000 + seq * 13,
                "type": "deb",
                "version": f"{seq % 9}.{seq % 31}.{seq % 7}-1+deb12u{seq % 4}",
            },
        },
    }


def frames(agent_id: str, n: int, start: int = 0) -> tuple[list[bytes], int]:
    """The bus frames of N events, and the bytes of their documents."""
    events = [package_event(agent_id, s) for s in range(start, start + n)]
    size = sum(len(msgpack.packb(e["data"])) for e in events)
    out = [
        msgpack.packb(events[i : i + FRAME_EVENTS], use_bin_type=True)
        for i in range(0, n, FRAME_EVENTS)
    ]
    return out, size


def run(n: int, limit: str, chunk: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ab-stateful-") as tmp:
        server = RefServer(Path(tmp) / "server", stateful_chunk=chunk or None).start()
        try:
            agent = enroll(server.url)
            payload, doc_bytes = frames(agent.id, n)
            fw = ForwarderUnderTest(
                server.url,
                credentials=Credentials(
                    uuid=agent.id,
                    key=agent.key,
                    name="h1",
                    groups=("default",),
                    server_url=server.url,
                ),  # fmt: skip
                stateful_batch_max_bytes=limit,
                backoff_initial=BACKOFF,
                backoff_max=BACKOFF,
            )
            # The outage: the stateful endpoint answers 503 while the backlog builds up.
            server.set_fault(status=503, path=STATEFUL)
            with fw:
                push_frames(fw.endpoints.events, payload)
                fw.wait_status("persisted", n, timeout=60 + n / 500)
                # a backlog older than batch_interval (1 s), as after a real outage: the
                # last partial batch does not wait for its timer
                wait_for(lambda: (fw.status()["oldest_event_age"] or 0) >= 1.0, 60, 0.05)
                server.clear_faults()
                up = time.time()  # the next attempt is at most BACKOFF away
                server.wait_for_events(n, module="inventory", timeout=120 + n / 50)
                received = [e["received"] for e in server.events(module="inventory")]
                status = fw.status()
            last = max(received)
            return {
                "events": len(received),
                "doc_bytes": doc_bytes / n,
                "seconds": last - up,
                "events_per_s": n / (last - up),
                "requests": sum(
                    server.request_count(path=STATEFUL, status=code) for code in (200, 400)
                ),
                "requests_400": server.request_count(path=STATEFUL, status=400),
                "quarantined": status["quarantined"],
                "documents": len(server.documents("wazuh-states-inventory-packages")),
            }
        finally:
            server.stop()


def measure(args: argparse.Namespace) -> None:
    mode = f"server --stateful-chunk {args.stateful_chunk}" if args.stateful_chunk else "server"
    summary = []
    for n in args.n:
        for limit in LIMITS:
            runs = []
            for i in range(args.repeat):
                r = run(n, limit, args.stateful_chunk)
                runs.append(r)
                print(
                    f"{n:,} docs, stateful_batch_max_bytes {limit}, run {i + 1}: "
                    f"{r['events_per_s']:,.0f} docs/s ({r['seconds']:.2f} s); "
                    f"{r['requests']} requests "
                    f"({r['requests_400']} refused with 400), {r['quarantined']} quarantined, "
                    f"{r['documents']:,}/{n:,} documents stored "
                    f"(documents of {r['doc_bytes']:.0f} bytes on average)",
                    flush=True,
                )
            rates = [r["events_per_s"] for r in runs]
            median = statistics.median(rates)
            chosen = min(runs, key=lambda r: abs(r["events_per_s"] - median))
            summary.append(
                f"{n:>6,} docs | {limit:>4} | {median:>8,.0f} docs/s "
                f"(all runs {[round(x) for x in rates]}) | "
                f"{chosen['requests']} requests, {chosen['requests_400']} × 400, "
                f"{chosen['quarantined']} quarantined"
            )
    print(f"stateful backlog drain to the reference server ({mode}), median of {args.repeat}:")
    for line in summary:
        print("  " + line)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--stateful-chunk", type=int, default=0, metavar="BYTES")


if __name__ == "__main__":
    sys.exit(runner.run(measure, __doc__, peer=False, options=options))
