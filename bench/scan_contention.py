"""Forwarder throughput and ingest latency during a full fim scan, threads vs processes.

    python -m bench.scan_contention [--files 40000] [-n 200000] [--rate 1000]
        [--seconds 10] [--repeat 3]

With ``[agent] isolation = "thread"`` the forwarder and the fim scan share one
interpreter, so one GIL: the forwarder's receiver is CPU-bound, and so is a scan (a
``stat``, a read and three hashes per file, a document built in Python). This measures
what the sharing costs, so the default layout is chosen by measurement.

``agentbus run`` (commander without the built-in executor; logcollector and inventory
off) against the benchmark sink (bench/sink.py), with fim on a generated tree of
``--files`` 4 KB files and a fresh data dir, so its first scan (every file read and
hashed, every document sent) starts with the agent. While that scan runs:

- **throughput**: N 300-byte events pushed on the fast path (frames of 100, as
  bench/forwarder_throughput.py), events/s from the first frame sent to the sink's last
  receipt;
- **latency**: ``--rate`` events/s for ``--seconds`` s, send → sink receipt p50/p99.

Each figure comes from its own agent start (so each runs during a first scan), and says
whether the scan was still running when the figure was complete (``fim scans == 0``):
a figure taken after the scan ended does not count. Three layouts: ``no scan`` (fim off,
threads: the reference), ``threads`` and ``processes`` (each with the scan). The
forwarder runs with ``batch_interval = 100ms`` as in the throughput benchmark.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq

from bench import runner
from bench.events import bus_event
from bench.footprint import Agent, counter
from bench.machine import describe
from bench.sink import Sink
from comms.credentials import Credentials, save_credentials
from core.config import config_from_dict, to_toml
from core.service import endpoints_from_config
from tests.fixtures.run import clean_env

LAYOUTS = {
    "no scan": ("thread", False),
    "threads": ("thread", True),
    "processes": ("process", True),
}
FILE_BYTES = 4096
FILES_PER_DIR = 200


def make_tree(root: Path, files: int) -> None:
    """``files`` files of 4 KB (distinct contents) in directories of 200."""
    block = os.urandom(FILE_BYTES)
    for i in range(files):
        d = root / f"d{i // FILES_PER_DIR:04d}"
        if i % FILES_PER_DIR == 0:
            d.mkdir(parents=True)
        (d / f"f{i:06d}.dat").write_bytes(i.to_bytes(8, "little") + block[8:])


class ScanAgent:
    """``agentbus run`` against the sink, with fim on ``tree`` (or off); a context manager
    around bench/footprint.py's :class:`Agent`."""

    def __init__(self, sink_url: str, tree: Path, isolation: str, scan: bool) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="abscan-", dir="/tmp"))
        config = config_from_dict(
            {
                "agent": {
                    "server_url": sink_url,
                    "verification_mode": "none",
                    "data_dir": str(self.tmp / "data"),
                    "run_dir": str(self.tmp / "run"),
                    "isolation": isolation,
                },
                "log": {"level": "WARNING"},
                "forwarder": {"batch_interval": "100ms"},
                "commander": {"agent_executor": False},
                "collectors": {
                    "logcollector": {"enabled": False},
                    "inventory": {"enabled": False},
                    "fim": {"enabled": scan, "paths": [str(tree)]},
                },
            }
        )
        save_credentials(
            config.data_dir,
            Credentials(
                uuid="01934f5e-0000-4000-8000-000000000002",
                key="k" * 32,
                name="bench",
                groups=("default",),
                server_url=sink_url,
            ),
        )
        config_file = self.tmp / "agentbus.toml"
        config_file.write_text(to_toml(config))
        self.endpoints = endpoints_from_config(config)
        self.scan = scan
        self.agent = Agent(config_file, clean_env(), self.tmp / "agent.log")

    def __enter__(self) -> ScanAgent:
        self.agent.start()
        self.agent.wait(lambda _code, r: "up" if r["summary"]["healthy"] else None, timeout=60)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.agent.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def scanning(self) -> bool | None:
        """Whether fim's first scan still runs (None: fim is off)."""
        if not self.scan:
            return None
        _code, report = self.agent.status()
        return report is not None and counter(report, "fim", "scans") == 0


def throughput(agent: ScanAgent, sink: Sink, n: int) -> dict[str, Any]:
    sink.reset()
    started = runner.push_frames(agent.endpoints.events, runner.frames(n))
    stats = sink.wait_events(n, timeout=60 + n / 2000)
    return {"events_per_s": n / (stats["last_ts"] - started), "during_scan": agent.scanning()}


def latency(agent: ScanAgent, sink: Sink, rate: int, seconds: float) -> dict[str, Any]:
    sink.reset()
    sink.configure(latency=True)
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 10_000)
    sock.connect(agent.endpoints.events)

    def send(first: int, last: int, now: float) -> None:
        sock.send(msgpack.packb([bus_event(q, sent=now) for q in range(first, last)]))

    n = int(rate * seconds)
    runner.paced(n, rate, send)
    sock.close()
    sink.wait_events(n, timeout=60 + seconds)
    during = agent.scanning()
    figures = runner.latency_figures(sink.stats(samples=True))
    sink.configure(latency=False)
    return {**figures, "during_scan": during}


def measure(args: argparse.Namespace) -> dict[str, dict[str, list[dict[str, Any]]]]:
    tree = Path(tempfile.mkdtemp(prefix="abscan-tree-", dir="/tmp"))
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {"throughput": [], "latency": []} for name in LAYOUTS
    }
    try:
        made = time.monotonic()
        make_tree(tree, args.files)
        print(f"fim tree: {args.files:,} files of 4 KB ({time.monotonic() - made:.1f} s to make)")
        with Sink() as sink:
            for round_ in range(args.repeat):
                for name, (isolation, scan) in LAYOUTS.items():
                    with ScanAgent(sink.url, tree, isolation, scan) as agent:
                        r = throughput(agent, sink, args.n)
                    results[name]["throughput"].append(r)
                    print(f"  round {round_ + 1} {name:<9} throughput {_tp(r)}", flush=True)
                    with ScanAgent(sink.url, tree, isolation, scan) as agent:
                        r = latency(agent, sink, args.rate, args.seconds)
                    results[name]["latency"].append(r)
                    print(f"  round {round_ + 1} {name:<9} latency    {_lat(r)}", flush=True)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    return results


def _tp(r: dict[str, Any]) -> str:
    return f"{r['events_per_s']:,.0f} events/s{_during(r)}"


def _lat(r: dict[str, Any]) -> str:
    return f"p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms{_during(r)}"


def _during(r: dict[str, Any]) -> str:
    return {None: "", True: " (during the scan)", False: " (AFTER the scan: not comparable)"}[
        r["during_scan"]
    ]


def summary(results: dict[str, dict[str, list[dict[str, Any]]]]) -> None:
    print("\nmedians:")
    base: dict[str, float] = {}
    for name in LAYOUTS:
        tp = statistics.median(r["events_per_s"] for r in results[name]["throughput"])
        p99 = statistics.median(r["p99_ms"] for r in results[name]["latency"])
        valid = all(r["during_scan"] is not False for k in results[name].values() for r in k)
        base.setdefault("tp", tp)
        base.setdefault("p99", p99)
        print(
            f"  {name:<9} throughput {tp:>9,.0f} events/s   latency p99 {p99:>5.0f} ms"
            f"{'' if valid else '   (some runs outlived the scan)'}"
        )
    thr = {
        n: statistics.median(r["events_per_s"] for r in results[n]["throughput"]) for n in LAYOUTS
    }
    p99s = {n: statistics.median(r["p99_ms"] for r in results[n]["latency"]) for n in LAYOUTS}
    print(
        f"  threads vs processes during the scan: throughput {thr['threads'] / thr['processes']:.2f}x, "
        f"latency p99 {p99s['threads'] / p99s['processes']:.2f}x (within 10 %: "
        f"{'yes' if thr['threads'] >= 0.9 * thr['processes'] and p99s['threads'] <= 1.1 * p99s['processes'] else 'no'})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40_000, help="files in the fim tree")
    parser.add_argument("-n", type=int, default=200_000, help="events of a throughput run")
    parser.add_argument("--rate", type=int, default=1000, help="events/s of a latency run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a latency run")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (medians are reported)")
    args = parser.parse_args(argv)
    print(describe(), flush=True)
    summary(measure(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
