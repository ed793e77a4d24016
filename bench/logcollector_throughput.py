"""logcollector throughput: lines per second from a log file into the forwarder.

    python -m bench.logcollector_throughput [--lines 300000] [--runs 3]

Each run starts, as separate processes, the bench HTTP sink (bench/sink.py), the real
forwarder (``agentbus forwarder``) pointed at it, and the logcollector
(``agentbus logcollector``) watching a glob. A pre-written file of syslog-like
lines (bench/events.py) is then renamed into the watched directory, and the clock runs
until the logcollector reports every line **committed by the forwarder** (its ``lines``
counter, read on its control socket): that is the figure, lines/s into the forwarder.
The time until the sink received every line (end to end) is printed too. Median of runs.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.events import syslog_payload
from bench.machine import describe
from bench.sink import Sink
from bus.errors import BusError
from collectors import metrics as km
from comms.credentials import Credentials, save_credentials
from core.config import Config, config_from_dict
from tests.fixtures.commander import Proc, status, wait_status
from tests.fixtures.common import wait_for, write_config
from tests.fixtures.forwarder import ForwarderProcess


def _lines(config: Config) -> int:
    """The logcollector's ``lines`` counter (0 while it does not answer)."""
    try:
        return int(status(config, "logcollector").get("lines", 0))
    except BusError:
        return 0


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def start_logcollector(
    stack: contextlib.ExitStack, base: Path, sink: Sink, logcollector: dict[str, object]
) -> tuple[Config, Proc]:
    """An enrolled forwarder against ``sink`` and a logcollector with these settings, each
    its own process, working in ``base`` (run/ and data/ made here), stopped by ``stack``;
    returns once the logcollector answers."""
    run_dir, data_dir = base / "run", base / "data"
    for d in (run_dir, data_dir):
        d.mkdir(exist_ok=True)
    save_credentials(
        data_dir,
        Credentials(
            uuid="0193b7c1-0000-4000-8000-000000000001",
            key="k" * 32,
            name="bench",
            server_url=sink.url,
        ),
    )
    config = config_from_dict(
        {
            "agent": {"data_dir": str(data_dir), "run_dir": str(run_dir), "server_url": sink.url},
            "log": {"level": "WARNING"},
            "collectors": {"logcollector": logcollector},
        }
    )
    config_file = write_config(config, base / "agentbus.toml")
    forwarder = ForwarderProcess(config, config_file, base / "forwarder.out").start()
    stack.callback(forwarder.terminate, 15)
    collector = Proc(
        ["-m", "agent.main", "logcollector", "--config", str(config_file)],
        base / "logcollector.out",
    )
    stack.callback(collector.stop)  # stopped before the forwarder: last in, first out
    wait_status(config, "logcollector", 20)
    return config, collector


def one_run(lines: int, payload: bytes) -> dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix="ab-lcb-", dir="/tmp"))
    logs = base / "logs"
    logs.mkdir()
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, base, ignore_errors=True)
        sink = Sink().start()
        stack.callback(sink.stop)
        config, collector = start_logcollector(
            stack,
            base,
            sink,
            {"paths": [str(logs / "*.log")], "read_from": "start", "poll_interval": "100ms"},
        )

        staged = base / "burst.log"
        staged.write_bytes(payload)
        start = time.monotonic()
        staged.rename(logs / "burst.log")  # appears at once, whole
        wait_for(lambda: _lines(config) >= lines, 600)  # every line committed
        committed = time.monotonic() - start
        sink.wait_events(lines, timeout=600)
        delivered = time.monotonic() - start
        rss_mb = _rss_mb(collector.pid)
    return {
        "committed_s": committed,
        "lines_per_s": lines / committed,
        "end_to_end_per_s": lines / delivered,
        "collector_rss_mb": rss_mb,
    }


#: a ROUTER that acks every frame at once without reading it: the collector's own ceiling
_NULL_INGEST = """
import sys, zmq, msgpack
ctx = zmq.Context(); s = ctx.socket(zmq.ROUTER); s.bind(sys.argv[1])
ok = msgpack.packb({"ok": True, "accepted": 1})
print("READY", flush=True)
while True:
    parts = s.recv_multipart(copy=False)
    s.send_multipart([parts[0], ok])
"""


def collector_ceiling(lines: int, payload: bytes) -> float:
    """Lines/s of the logcollector alone, against an ingest that acks without work."""
    base = Path(tempfile.mkdtemp(prefix="ab-lcc-", dir="/tmp"))
    null = subprocess.Popen(
        [sys.executable, "-c", _NULL_INGEST, f"ipc://{base}/ingest.sock"], stdout=subprocess.PIPE
    )
    try:
        assert null.stdout is not None and null.stdout.readline().startswith(b"READY")
        from collectors.logcollector.service import LogcollectorService
        from core.config import config_from_dict

        (base / "burst.log").write_bytes(payload)
        config = config_from_dict(
            {
                "agent": {"data_dir": str(base / "data"), "run_dir": str(base)},
                "collectors": {
                    "logcollector": {"paths": [str(base / "burst.log")], "read_from": "start"}
                },
            }
        )
        import gc

        gc.set_threshold(*LogcollectorService.gc_threshold)  # as `agentbus logcollector` does
        service = LogcollectorService(config)
        service.startup()
        start = time.monotonic()
        while service.step():
            pass
        took = time.monotonic() - start
        service.shutdown(time.monotonic() + 5)
        assert service.metrics.get(km.LINES) == lines
        return lines / took
    finally:
        null.kill()
        null.wait()
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    payload = syslog_payload(args.lines)
    if not payload.endswith(b"\n"):
        payload += b"\n"
    line_bytes = len(payload) / args.lines
    print(describe())
    print(
        f"logcollector → forwarder: {args.lines} lines of ~{line_bytes:.0f} bytes, {args.runs} runs"
    )
    results = []
    for i in range(args.runs):
        r = one_run(args.lines, payload)
        results.append(r)
        print(
            f"  run {i + 1}: {r['lines_per_s']:,.0f} lines/s committed by the forwarder "
            f"({r['committed_s']:.2f} s), {r['end_to_end_per_s']:,.0f} lines/s at the sink, "
            f"collector peak RSS {r['collector_rss_mb']:.0f} MB"
        )
    med = statistics.median(r["lines_per_s"] for r in results)
    e2e = statistics.median(r["end_to_end_per_s"] for r in results)
    print(f"median: {med:,.0f} lines/s into the forwarder; {e2e:,.0f} lines/s end to end")
    from loguru import logger

    logger.remove()  # the in-process ceiling run would log every file it opens
    ceilings = [collector_ceiling(args.lines, payload) for _ in range(args.runs)]
    print(
        f"logcollector alone (null ingest, same lines): median "
        f"{statistics.median(ceilings):,.0f} lines/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
