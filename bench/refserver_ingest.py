"""Reference server: how fast it takes events in (so tests and demos know its ceiling).

    python -m bench.refserver_ingest [--events 200000] [--runs 3]

Starts ``agentbus server`` (strict, as shipped), enrolls one agent, then one ``requests``
keep-alive client posts ~1 MB bodies of 300-byte events (``bench/events.py``) to
``/api/v1/events/stateless``, and ~1 MB bodies of inventory ``packages`` ``create`` events
to ``/api/v1/events/stateful``: new documents, each valid for the packages index mapping
and exactly 300 bytes too (:func:`package_data`), so every item is checked against the
mapping and stored (201 ``created``; the run fails if one is refused). Every event is
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
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import requests

from bench.events import event_data
from bench.machine import describe
from tests.fixtures.refserver import RefServer
from tests.refserver.helpers import enroll

BODY_BYTES = 1_000_000
#: the stateful documents are as big as the stateless events' data lines
DOC_BYTES = 300


def package_data(seq: int) -> dict[str, Any]:
    """A new ``inventory``/``packages`` document, valid for the index mapping, whose compact
    JSON is exactly DOC_BYTES bytes (the description is padded)."""
    name = f"libbench-component-{seq}"
    doc: dict[str, Any] = {
        "package": {
            "name": name,
            "version": f"{seq % 9}.{seq % 31}.{seq % 7}-1+deb12u{seq % 4}",
            "architecture": "amd64",
            "type": "deb",
            "description": "",
            "size": 40_000 + seq,
        }
    }
    pad = DOC_BYTES - len(json.dumps(doc, separators=(",", ":")))
    doc["package"]["description"] = (f"{name}: shared library and helpers " * 9)[:pad].strip()
    doc["package"]["description"] += "." * (pad - len(doc["package"]["description"]))
    return doc


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
    answers = []
    started = time.perf_counter()
    for body in payloads:
        r = session.post(
            f"{url}/api/v1/events/{kind}", data=body, headers=agent.headers(), timeout=120
        )
        assert r.status_code == expect, r.text[:200]
        answers.append(r)
    took = time.perf_counter() - started
    if kind == "stateful":  # every item stored, none refused (checked off the clock)
        statuses = Counter(i["status"] for r in answers for i in r.json()["results"])
        assert set(statuses) == {201}, statuses
    return took


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
                                    "operation": "create",
                                },
                                separators=(",", ":"),
                            ),
                            json.dumps(package_data(seq), separators=(",", ":")),
                        ]
                        for seq in range(n)
                    ],
                )
                proc = psutil.Process(server.pid)
                cpu0 = sum(proc.cpu_times()[:2])
                t_less = send(server.url, agent, "stateless", stateless, 204)
                t_ful = send(server.url, agent, "stateful", stateful, 200)
                cpu = sum(proc.cpu_times()[:2]) - cpu0
                assert server.count_events() == 2 * n
                assert server.documents_refused() == 0
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
