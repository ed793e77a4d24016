"""The shared runner of the forwarder benchmarks (a support module, not a benchmark).

- :func:`run` — a benchmark's ``main``: its options (``-n``, ``--repeat``, ``--no-peer`` and
  its own), the machine printed before and after what it measures.
- :func:`compare` — ``--repeat`` runs of agentbus, each next to a run of the syslog-ng peer
  (bench/peer_syslog_ng.py, which says when it has to skip), one line per pair, then the
  medians and their ratio.
- :class:`ForwarderUnderTest` — ``agentbus forwarder`` as a child process (the tests'
  :class:`~tests.fixtures.forwarder.ForwarderProcess`) in its own temp dir, with made-up
  credentials pointing at the sink (or a real enrollment's) and the given ``[forwarder]``
  options; ``.rss()`` / ``.peak_rss`` / ``.cpu_seconds()`` measure the process.
- :data:`PLAIN_INSTALL` / :func:`plain_install_env` — run as on a ``pip install agentbus``
  without the [server] extra: the reference server's packages hidden from the process.
- :func:`frames` / :func:`push_frames` — benchmark events (events.py) pre-encoded as bus
  frames, so the producer's own encoding is not measured, pushed as fast as the forwarder
  takes them (a blocked send waits: back-pressure, never loss).
- :func:`paced` / :func:`latency_figures` — a steady stamped producer, and p50/p99/max of
  receipt − send at the sink.
- :func:`median_run` — the median run of several, with every run's figure attached.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import psutil
import zmq

from bench.events import bus_event
from bench.machine import describe
from comms.credentials import Credentials, save_credentials
from core.config import config_from_dict
from core.service import endpoints_from_config
from tests.fixtures.common import wait_for
from tests.fixtures.forwarder import ForwarderProcess, write_config

Run = dict[str, Any]
Say = Callable[[Run], str]
#: events per bus frame sent by the benchmark producer (a collector batching its reads)
FRAME_EVENTS = 100
#: what the dev venv has and a ``pip install agentbus`` without the [server] extra has not
#: (the reference server's packages); pyjwt imports ``cryptography`` when it is there
#: (~10 MB RSS per process that imports pyjwt)
NOT_IN_PLAIN_INSTALL = ("cryptography", "fastapi", "uvicorn", "starlette", "pydantic")
#: Python code that makes every import of them fail, as if they were not installed
PLAIN_INSTALL = (
    f"import sys\nfor _name in {NOT_IN_PLAIN_INSTALL!r}:\n    sys.modules[_name] = None\n"
)


def plain_install_env(site_dir: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` for processes that run as on a plain install: a ``sitecustomize`` in
    ``site_dir`` (created) with :data:`PLAIN_INSTALL`, first on ``PYTHONPATH`` (children
    inherit it)."""
    site_dir.mkdir(parents=True, exist_ok=True)
    (site_dir / "sitecustomize.py").write_text(PLAIN_INSTALL)
    path = os.pathsep.join(filter(None, [str(site_dir), env.get("PYTHONPATH")]))
    return {**env, "PYTHONPATH": path}


def run(
    measure: Callable[[argparse.Namespace], object],
    doc: str,
    *,
    n: int | None = None,
    repeat: int | None = 3,
    peer: bool = True,
    options: Callable[[argparse.ArgumentParser], object] | None = None,
    argv: list[str] | None = None,
) -> int:
    """Parse the options, print the machine, ``measure(args)``, print the machine again."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    if n is not None:
        parser.add_argument("-n", type=int, default=n)
    if repeat is not None:
        parser.add_argument("--repeat", type=int, default=repeat)
    if peer:
        parser.add_argument("--no-peer", action="store_true", help="agentbus only")
    if options is not None:
        options(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    print(describe())
    measure(args)
    print(describe())
    return 0


def compare(
    args: argparse.Namespace,
    what: str,
    ours: Callable[[], Run],
    peer: Callable[[], Run],
    *,
    run_ours: Say,
    run_peer: Say,
    median_ours: Say,
    median_peer: Say,
    key: str = "events_per_s",
) -> None:
    """``args.repeat`` pairs of runs (agentbus, then the peer unless ``--no-peer``), then the
    median of each side and the ratio; the ``Say`` functions word one run's figures."""
    mine: list[Run] = []
    peers: list[Run] = []
    for i in range(args.repeat):
        r = ours()
        mine.append(r)
        line = f"run {i + 1}: agentbus {run_ours(r)}"
        if not args.no_peer:
            p = peer()
            if "skipped" in p:
                line += f"; syslog-ng skipped: {p['skipped']}"
            else:
                peers.append(p)
                line += f"; syslog-ng {run_peer(p)}; ratio {r[key] / p[key]:.2f}x"
        print(line, flush=True)
    chosen = median_run(mine, key)
    print(f"agentbus forwarder {what} (median of {len(mine)}): {median_ours(chosen)}")
    if peers:
        other = median_run(peers, key)
        print(f"syslog-ng {what} (median of {len(peers)}): {median_peer(other)}")
        print(f"ratio agentbus / syslog-ng: {chosen[key] / other[key]:.2f}x")


def median_run(runs: list[Run], key: str = "events_per_s") -> Run:
    """The run whose ``key`` is the median (the whole run, so its figures stay consistent),
    with every run's value attached as ``all_<key>``."""
    ordered = sorted(runs, key=lambda r: r[key])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["all_" + key] = [round(r[key]) for r in runs]
    return chosen


def frames(n: int, per_frame: int = FRAME_EVENTS, start: int = 0) -> list[bytes]:
    """Events ``start .. start+n-1`` as msgpack frames of ``per_frame`` events."""
    out = []
    for first in range(start, start + n, per_frame):
        batch = [bus_event(s) for s in range(first, min(first + per_frame, start + n))]
        out.append(msgpack.packb(batch, use_bin_type=True))
    return out


def push_frames(endpoint: str, payload: list[bytes]) -> float:
    """PUSH every frame (blocking when the forwarder pushes back); returns the start time."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, 1000)
    sock.setsockopt(zmq.LINGER, 60_000)
    sock.connect(endpoint)
    started = time.time()
    for frame in payload:
        sock.send(frame, copy=False)
    sock.close()  # linger: waits until the frames are handed over
    return started


def paced(n: int, rate: int, send: Callable[[int, int, float], object]) -> None:
    """``send(first, last, now)`` every 10 ms for ``rate / 100`` sequence numbers until ``n``
    are sent: a steady producer without a syscall per event (``now`` is the send time)."""
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    start = time.monotonic()
    for i, first in enumerate(range(0, n, per_tick)):
        delay = start + i * tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        send(first, min(first + per_tick, n), time.time())


def latency_figures(stats: dict[str, Any]) -> Run:
    """Counts and p50/p99/max (ms) of receipt − send of a ``Sink(latency=True)``'s samples."""
    lat = sorted(recv - sent for _, sent, recv in stats["samples"])
    return {
        "events": stats["events"],
        "distinct": stats["distinct"],
        "p50_ms": lat[len(lat) // 2] * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        "max_ms": lat[-1] * 1000,
    }


class ForwarderUnderTest(ForwarderProcess):
    """One forwarder process against ``server_url``; use as a context manager.

    ``plain_install`` emulates an install without the [server] extra: none of
    :data:`NOT_IN_PLAIN_INSTALL` (the dev venv has them for the reference server, and pyjwt
    imports ``cryptography`` when present: ~10 MB RSS). ``credentials``: a real
    enrollment's (default: made-up ones, which the sink takes).
    """

    def __init__(
        self,
        server_url: str,
        *,
        plain_install: bool = False,
        credentials: Credentials | None = None,
        **forwarder: Any,
    ) -> None:
        self.plain_install = plain_install
        self.tmp = Path(tempfile.mkdtemp(prefix="abfw-", dir="/tmp"))
        (self.tmp / "run").mkdir(mode=0o700)
        config = config_from_dict(
            {
                "agent": {
                    "server_url": server_url,
                    "verification_mode": "none",
                    "data_dir": str(self.tmp / "data"),
                    "run_dir": str(self.tmp / "run"),
                },
                "log": {"level": "WARNING"},
            }
        )
        save_credentials(
            config.data_dir,
            credentials
            or Credentials(
                uuid="01934f5e-0000-4000-8000-000000000001",
                key="k" * 32,
                name="bench",
                groups=("default",),
                server_url=server_url,
            ),
        )
        config_file = write_config(self.tmp / "agentbus.toml", config, forwarder)
        super().__init__(config, config_file, self.tmp / "forwarder.log")
        self.endpoints = endpoints_from_config(config)
        self.peak_rss = 0
        self._sampling = threading.Event()

    def command_line(self) -> list[str]:
        if not self.plain_install:
            return super().command_line()
        code = (
            PLAIN_INSTALL + "from agent.main import main\n"
            f"sys.exit(main(['forwarder', '--config', {str(self.config_file)!r}]))\n"
        )
        return [sys.executable, "-c", code]

    def start(self) -> ForwarderUnderTest:
        super().start()
        self._sampling.clear()
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self) -> None:
        while not self._sampling.wait(0.05):
            try:
                self.rss()
            except psutil.Error:
                return

    def rss(self) -> int:
        assert self.proc is not None
        value = int(psutil.Process(self.proc.pid).memory_info().rss)
        self.peak_rss = max(self.peak_rss, value)
        return value

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        t = psutil.Process(self.proc.pid).cpu_times()
        return float(t.user + t.system)

    def wait_status(self, key: str, value: int, timeout: float) -> dict[str, Any]:
        """The forwarder's status once its counter ``key`` reached ``value``."""

        def reached() -> dict[str, Any] | None:
            status = self.status()
            return status if status.get(key, 0) >= value else None

        return dict(wait_for(reached, timeout, interval=0.05))

    def stop(self) -> int | None:
        self._sampling.set()
        return self.terminate(30)

    def __enter__(self) -> ForwarderUnderTest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
