"""Reference server: how fast it takes events in (so tests and demos know its ceiling).

    python bench/refserver_ingest.py [--events 200000] [--runs 3]

Starts ``agentbus server``, enrolls one agent, then one ``requests`` keep-alive client posts
~1 MB bodies of 300-byte events (``bench/events.py``) to ``/api/v1/events/stateless``, and
1 MB bodies of inventory ``update`` events to ``/api/v1/events/stateful``. Every event is
parsed, validated and stored in SQLite before the answer. Prints events/s and MB/s (median
over runs), the server's CPU time, and the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import requests  # noqa: E402
from events import event_data  # noqa: E402
from machine import describe  # noqa: E402

from tests.fixtures.refserver import RefServer  # noqa: E402
from tests.refserver.helpers import enroll  # noqa: E402

BODY_BYTES = 1_000_000


def bodies(metadata: str, lines_of: list[list[str]]) -> list[bytes]:
    """Join event lines into bodies of about BODY_BYTES each."""
    out, current, size = [], [metadata], 0
    for event_lines in lines_of:
        current += event_lines
        size += sum(len(line) + 1 for line in event_lines)
        if size >= BODY_BYTES:
            out.append("\n".join(current).encode())
            current, size = [metadata], 0
    if len(current) > 1:
        out.append("\n".join(current).encode())
    return out


def send(url: str, agent, kind: str, payloads: list[bytes], expect: int) -> float:
    session = requests.Session()
    started = time.perf_counter()
    for body in payloads:
        r = session.post(
            f"{url}/api/v1/events/{kind}", data=body, headers=agent.headers(), timeout=120
        )
        assert r.status_code == expect, r.text[:200]
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(describe())
    n = args.events
    header = json.dumps({"module": "logcollector", "collector": "file"}, separators=(",", ":"))
    figures: dict[str, list[float]] = {"stateless": [], "stateful": [], "cpu": []}
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="ab-ingest-") as tmp:
            server = RefServer(Path(tmp) / "data", key_hash_rounds=1000).start()
            try:
                agent = enroll(server.url)
                data = [json.dumps(event_data(seq), separators=(",", ":")) for seq in range(n)]
                stateless = bodies(agent.metadata(), [[header, d] for d in data])
                stateful = bodies(
                    agent.metadata(),
                    [
                        [
                            json.dumps(
                                {
                                    "id": f"doc{seq}",
                                    "module": "inventory",
                                    "collector": "packages",
                                    "operation": "update",
                                },
                                separators=(",", ":"),
                            ),
                            d,
                        ]
                        for seq, d in enumerate(data)
                    ],
                )
                proc = psutil.Process(server.pid)
                cpu0 = sum(proc.cpu_times()[:2])
                t_less = send(server.url, agent, "stateless", stateless, 204)
                t_ful = send(server.url, agent, "stateful", stateful, 200)
                cpu = sum(proc.cpu_times()[:2]) - cpu0
                assert server.count_events() == 2 * n
            finally:
                server.stop()
        mb = sum(len(b) for b in stateless) / 1e6
        figures["stateless"].append(n / t_less)
        figures["stateful"].append(n / t_ful)
        figures["cpu"].append(cpu)
        print(
            f"run {i + 1}: stateless {n / t_less:,.0f} events/s ({mb / t_less:.1f} MB/s,"
            f" {len(stateless)} bodies) | stateful {n / t_ful:,.0f} events/s |"
            f" server CPU {cpu:.1f} s for {2 * n:,} events",
            flush=True,
        )
    print(
        f"median: stateless {statistics.median(figures['stateless']):,.0f} events/s,"
        f" stateful {statistics.median(figures['stateful']):,.0f} events/s"
        f" ({n:,} events of 300 bytes each way)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
