"""Shared pieces of the forwarder benchmarks (not a benchmark itself: the name starts with _).

- :class:`ForwarderUnderTest` — ``agentbus forwarder`` as a child process with its own data
  and run dirs in a temp dir, a fake enrollment (``credentials.json``) pointing at the sink,
  and a config file with the given ``[forwarder]`` options. ``.status()`` reads its control
  socket, ``.rss()`` / ``.peak_rss`` / ``.cpu_seconds()`` measure the process.
- :func:`frames` — benchmark events (events.py) pre-encoded as bus frames, so the producer's
  own encoding is not part of what is measured.
- :func:`push_frames` — send frames on the events PUSH socket as fast as the forwarder takes
  them (a blocked send waits: back-pressure, never loss).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import psutil
import zmq

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from events import bus_event  # noqa: E402

from bus.control import request  # noqa: E402
from bus.endpoints import Endpoints  # noqa: E402
from bus.errors import BusError  # noqa: E402
from comms.credentials import Credentials, save_credentials  # noqa: E402

#: events per bus frame sent by the benchmark producer (a collector batching its reads)
FRAME_EVENTS = 100


def frames(n: int, per_frame: int = FRAME_EVENTS, start: int = 0) -> list[bytes]:
    """Events ``start .. start+n-1`` as msgpack frames of ``per_frame`` events."""
    out = []
    for first in range(start, start + n, per_frame):
        batch = [bus_event(s) for s in range(first, min(first + per_frame, start + n))]
        out.append(msgpack.packb(batch, use_bin_type=True))
    return out


def push_frames(endpoint: str, payload: list[bytes]) -> float:
    """PUSH every frame (blocking when the forwarder pushes back); returns the start time."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.SNDHWM, 1000)
    sock.setsockopt(zmq.LINGER, 60_000)
    sock.connect(endpoint)
    started = time.time()
    for frame in payload:
        sock.send(frame, copy=False)
    sock.close()  # linger: waits until the frames are handed over
    return started


class ForwarderUnderTest:
    """One forwarder process against ``server_url``; use as a context manager."""

    def __init__(self, server_url: str, *, plain_install: bool = False, **forwarder: Any) -> None:
        #: emulate an install without the [server] extra: no ``cryptography`` (the dev venv
        #: has it for the reference server, and pyjwt imports it when present: ~10 MB RSS)
        self.plain_install = plain_install
        self.tmp = Path(tempfile.mkdtemp(prefix="abfw-", dir="/tmp"))
        self.data_dir = self.tmp / "data"
        self.run_dir = self.tmp / "run"
        self.run_dir.mkdir(mode=0o700)
        save_credentials(
            self.data_dir,
            Credentials(
                uuid="01934f5e-0000-4000-8000-000000000001",
                key="k" * 32,
                name="bench",
                groups=("default",),
                server_url=server_url,
            ),
        )
        lines = [
            "[agent]",
            f'server_url = "{server_url}"',
            'verification_mode = "none"',
            f'data_dir = "{self.data_dir}"',
            f'run_dir = "{self.run_dir}"',
            "[log]",
            'level = "WARNING"',
            "[forwarder]",
        ]
        for key, value in forwarder.items():
            lines.append(f"{key} = {value!r}".replace("'", '"'))
        self.config_file = self.tmp / "agentbus.toml"
        self.config_file.write_text("\n".join(lines) + "\n")
        self.endpoints = Endpoints.in_run_dir(self.run_dir)
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss = 0
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    def start(self) -> ForwarderUnderTest:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")}
        log = open(self.tmp / "forwarder.log", "ab")  # noqa: SIM115 - the child owns it
        if self.plain_install:
            code = (
                "import sys; sys.modules['cryptography'] = None; from agent.main import main; "
                f"sys.exit(main(['forwarder', '--config', {str(self.config_file)!r}]))"
            )
            cmd = [sys.executable, "-c", code]
        else:
            cmd = [
                sys.executable,
                "-m",
                "agent.main",
                "forwarder",
                "--config",
                str(self.config_file),
            ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"forwarder exited at start:\n{self.log()}")
            try:
                self.status()
                break
            except BusError:
                if time.monotonic() > deadline:
                    raise
        self._sampling.clear()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
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

    def status(self) -> dict[str, Any]:
        return request(self.endpoints.control("forwarder"), {"cmd": "status"}, timeout=2.0)

    def wait_status(self, key: str, value: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status.get(key, 0) >= value:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"forwarder {key} = {status.get(key)} < {value}")
            time.sleep(0.05)

    def stop(self) -> int | None:
        self._sampling.set()
        if self.proc is None:
            return None
        self.proc.terminate()
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def log(self) -> str:
        try:
            return (self.tmp / "forwarder.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> ForwarderUnderTest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run whose ``key`` is the median, with every run's value attached."""
    ordered = sorted(runs, key=lambda r: r[key])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["all_" + key] = [round(r[key]) for r in runs]
    return chosen
