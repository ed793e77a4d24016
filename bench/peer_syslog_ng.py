"""The peer agentbus is measured against: syslog-ng, disk-buffer(reliable(yes)) → http().

    python -m bench.peer_syslog_ng                 # all three measurements, median of 3
    python -m bench.peer_syslog_ng throughput -n 300000 --repeat 3
    python -m bench.peer_syslog_ng drain -n 300000 --repeat 3
    python -m bench.peer_syslog_ng latency --rate 1000 --seconds 10

syslog-ng (Debian ``syslog-ng-core`` + ``syslog-ng-mod-http``; installed with apt-get if
missing and we are root, else the peer is skipped) runs in the foreground with its own
config, persist, pid and control files and disk-buffer directory in a temp dir. It reads
raw lines (events.py) from a TCP source on loopback, with ``flags(flow-control)`` on the
log path so a full buffer slows the sender instead of dropping, and posts them to the
same sink (sink.py) agentbus posts to, **in the same NDJSON of docs/protocol.md**: a
``body-prefix()`` agent line, then per event the stateless header line and a data line
rendered with ``$(format-json ...)`` — about the same bytes on the wire as agentbus
sends (the data line has the same 300 bytes, its keys in another order).

Measurements (each prints its figures and the machine):

- ``throughput``: N events sent as fast as syslog-ng takes them; time from the first
  byte sent until the sink has all N; events/s; syslog-ng's peak RSS.
- ``drain``: the sink is down; N events go into the disk buffer (we wait until syslog-ng
  reports them all queued); the sink comes back; time until it has all N. Reported from
  the sink's start and from the first receipt (syslog-ng retries every ``time-reopen``
  = 1 s, so up to 1 s of the first figure is its retry wait, not the drain).
- ``latency``: lines stamped with their send time at a steady 1,000 events/s; p50/p99/max
  of sink receipt − send (dominated by ``batch-timeout``, 100 ms).

The forwarder benchmarks call :func:`run_throughput`, :func:`run_drain`, :func:`run_latency`
(each returns a dict with ``events_per_s`` / ``p99_ms``, or ``{"skipped": why}``), and
bench/footprint.py :func:`run_footprint` (syslog-ng idle, at 1,000 events/s and with a
backlog in its disk buffer: the same figures as the whole agent's); this is the one place
syslog-ng is installed, configured, started and measured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from bench import _footprint
from bench.events import EVENT_BYTES, syslog_line, syslog_payload
from bench.machine import describe
from bench.runner import latency_figures, median_run, paced
from bench.sink import STATELESS, Sink, agent_line
from tests.fixtures.refserver import free_port

#: Debian packages that provide syslog-ng and its http() destination
PACKAGES = ("syslog-ng-core", "syslog-ng-mod-http")
#: the stateless header line every event gets (as the agentbus forwarder sends it)
HEADER = '{"module":"logcollector","collector":"file"}'
#: what a measurement returns when there is no syslog-ng to measure
SKIPPED = {"skipped": "syslog-ng with the http module is not installed"}


@dataclass(frozen=True, kw_only=True)
class Tuning:
    """syslog-ng knobs; the defaults are what we found fastest here (see RESULTS.md)."""

    batch_lines: int = 3000  # ~1 MB bodies, like the forwarder's default batch
    batch_bytes: int = 1_000_000
    batch_timeout_ms: int = 100
    workers: int = 2
    disk_buf_size: int = 2_000_000_000  # room for 1,000,000+ events: nothing is dropped
    mem_buf_size: int | None = None  # reliable mode's RAM cache; None: syslog-ng's default
    log_iw_size: int = 10_000  # source window (flow-control)


# --------------------------------------------------------------------------- install


def find_syslog_ng(install: bool = True) -> str | None:
    """Path of the syslog-ng binary, installing the packages first if needed and allowed."""
    path = shutil.which("syslog-ng") or (
        "/usr/sbin/syslog-ng" if os.path.exists("/usr/sbin/syslog-ng") else None
    )
    if path and _has_http_module():
        return path
    if not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"installing {' '.join(PACKAGES)} with apt-get ...", flush=True)
    subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
    done = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES],
        env=env,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        print(done.stderr.decode(errors="replace")[-500:], file=sys.stderr)
        return None
    return shutil.which("syslog-ng") or "/usr/sbin/syslog-ng"


def _has_http_module() -> bool:
    import glob

    return bool(glob.glob("/usr/lib/syslog-ng/*/libhttp.so"))


def _version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    first = out.stdout.splitlines()[0] if out.stdout else "syslog-ng ?"
    for line in out.stdout.splitlines():
        if line.startswith("Installer-Version:"):
            return "syslog-ng " + line.split(":", 1)[1].strip()
    return first


def _config_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("Config version:"):
            return line.split(":", 1)[1].strip()
    return "3.35"


# --------------------------------------------------------------------------- config


def _q(text: str) -> str:
    """A syslog-ng double-quoted string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_config(
    *, version: str, workdir: str, src_port: int, sink_url: str, token: str, tuning: Tuning
) -> str:
    """The syslog-ng configuration: TCP source → disk-buffer(reliable) → http() to the sink."""
    mem = f" mem-buf-size({tuning.mem_buf_size})" if tuning.mem_buf_size else ""
    data = (
        "$(format-json event.created=${R_YEAR}-${R_MONTH}-${R_DAY}T${R_HOUR}:${R_MIN}:${R_SEC}.${R_MSEC}Z"
        " event.original=${MSG}"
        " log.file.path=/var/log/syslog)"
    )
    return f"""@version: {version}
options {{
  stats-freq(0);
  threaded(yes);
  use-dns(no);
  use-fqdn(no);
  keep-hostname(yes);
  chain-hostnames(no);
  frac-digits(3);
  recv-time-zone("+00:00");
  send-time-zone("+00:00");
  time-reopen(1);
}};

source s_bench {{
  network(ip("127.0.0.1") port({src_port}) transport("tcp") flags(no-parse)
          log-iw-size({tuning.log_iw_size}) max-connections(10) log-msg-size(65536));
}};

destination d_sink {{
  http(
    url({_q(sink_url + STATELESS)})
    method("POST")
    headers({_q("Authorization: Bearer " + token)}, "Content-Type: application/json")
    body-prefix({_q(agent_line().decode() + chr(10))})
    body({_q(HEADER + chr(10) + data)})
    delimiter("\\n")
    batch-lines({tuning.batch_lines})
    batch-bytes({tuning.batch_bytes})
    batch-timeout({tuning.batch_timeout_ms})
    workers({tuning.workers})
    time-reopen(1)
    disk-buffer(reliable(yes) dir({_q(os.path.join(workdir, "buffer"))})
                disk-buf-size({tuning.disk_buf_size}){mem})
  );
}};

log {{ source(s_bench); destination(d_sink); flags(flow-control); }};
"""


# --------------------------------------------------------------------------- process


class SyslogNg:
    """One syslog-ng process with everything in its own temp dir, posting to ``sink``."""

    def __init__(self, binary: str, sink: Sink, tuning: Tuning | None = None) -> None:
        self.binary = binary
        self.tuning = tuning = tuning or Tuning()
        sink_url, token = sink.url, sink.token()
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-syslog-ng-")
        self.workdir = self.tmp.name
        os.makedirs(os.path.join(self.workdir, "buffer"))
        self.port = free_port()
        self.conf = os.path.join(self.workdir, "syslog-ng.conf")
        self.control = os.path.join(self.workdir, "syslog-ng.ctl")
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(
                render_config(
                    version=_config_version(binary),
                    workdir=self.workdir,
                    src_port=self.port,
                    sink_url=sink_url,
                    token=token,
                    tuning=tuning,
                )
            )
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss = 0
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    def start(self, timeout: float = 15.0) -> None:
        w = self.workdir
        cmd = [
            self.binary,
            "-F",
            "--no-caps",
            "-f",
            self.conf,
            f"--persist-file={w}/syslog-ng.persist",
            f"--pidfile={w}/syslog-ng.pid",
            f"--control={self.control}",
        ]
        self.log = open(os.path.join(w, "syslog-ng.log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"syslog-ng exited {self.proc.returncode}: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"syslog-ng did not listen: {self.log_tail()}") from None
                time.sleep(0.05)
        self._sampling.clear()
        self._sampler = threading.Thread(target=self._sample_rss, daemon=True)
        self._sampler.start()

    def _sample_rss(self) -> None:
        import psutil

        assert self.proc is not None
        try:
            p = psutil.Process(self.proc.pid)
            while not self._sampling.wait(0.1):
                self.peak_rss = max(self.peak_rss, p.memory_info().rss)
        except psutil.Error:
            pass

    def rss(self) -> int:
        import psutil

        assert self.proc is not None
        rss: int = psutil.Process(self.proc.pid).memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)
        return rss

    def stats(self) -> dict[str, int]:
        """syslog-ng-ctl stats as {"<component>;<id>;<instance>;<type>": value}."""
        ctl = shutil.which("syslog-ng-ctl") or "/usr/sbin/syslog-ng-ctl"
        out = subprocess.run(
            [ctl, "stats", "-c", self.control], capture_output=True, text=True, check=False
        ).stdout
        result = {}
        for line in out.splitlines()[1:]:
            parts = line.split(";")
            if len(parts) == 6 and parts[5].isdigit():
                result[";".join(parts[:3] + parts[4:5])] = int(parts[5])
        return result

    def counter(self, prefix: str, kind: str) -> int:
        """Sum of the counters whose key starts with ``prefix`` and has type ``kind``."""
        return sum(
            v for k, v in self.stats().items() if k.startswith(prefix) and k.endswith(";" + kind)
        )

    def cpu_seconds(self) -> float:
        """User + system CPU syslog-ng has used so far."""
        import psutil

        assert self.proc is not None
        t = psutil.Process(self.proc.pid).cpu_times()
        return float(t.user + t.system)

    def figures(self) -> dict[str, Any]:
        """What every measurement reports about the peer: its version and tuning."""
        return {"peer": _version(self.binary), "tuning": asdict(self.tuning)}

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self.workdir, "syslog-ng.log"), "rb") as f:
                return f.read()[-1500:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        self._sampling.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()
        self.tmp.cleanup()

    def __enter__(self) -> SyslogNg:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def send_lines(port: int, payload: bytes) -> float:
    """Write the raw lines to syslog-ng's TCP source; returns time.time() of the first byte."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        view = memoryview(payload)
        started = time.time()
        # chunks, so the first bytes leave at once and flow control applies as we go
        for off in range(0, len(view), 1 << 20):
            s.sendall(view[off : off + (1 << 20)])
    return started


# --------------------------------------------------------------------------- measurements


def _timeout_for(n: int) -> float:
    return 60.0 + n / 5_000  # generous: a failed run should end, a slow one should finish


def run_throughput(n: int = 300_000, tuning: Tuning | None = None) -> dict[str, Any]:
    """Durable end-to-end throughput: N raw lines in, time until the sink has all N."""
    binary = find_syslog_ng()
    if binary is None:
        return dict(SKIPPED)
    payload = syslog_payload(n)
    with Sink() as sink, SyslogNg(binary, sink, tuning) as peer:
        sink_cpu, peer_cpu = sink.cpu_seconds(), peer.cpu_seconds()
        started = send_lines(peer.port, payload)
        sent = time.time()
        stats = sink.wait_events(n, timeout=_timeout_for(n))
        peer.rss()
        sink_cpu, peer_cpu = sink.cpu_seconds() - sink_cpu, peer.cpu_seconds() - peer_cpu
        elapsed = stats["last_ts"] - started
        return {
            "events": stats["events"],
            "expected": n,
            "event_bytes": EVENT_BYTES,
            "seconds": elapsed,
            "events_per_s": n / elapsed,
            "send_seconds": sent - started,
            "requests": stats["requests"],
            "bad_requests": stats["bad_requests"],
            "peak_rss_mb": peer.peak_rss / 1e6,
            "peer_cpu_s": peer_cpu,
            "sink_cpu_s": sink_cpu,
            **peer.figures(),
        }


def run_drain(n: int = 300_000, tuning: Tuning | None = None) -> dict[str, Any]:
    """Backlog drain: N events buffered while the sink is down, then the sink comes back."""
    binary = find_syslog_ng()
    if binary is None:
        return dict(SKIPPED)
    payload = syslog_payload(n)
    sink = Sink().start()
    sink.stop()  # keep its port: syslog-ng points at a dead port until the sink returns
    peer = SyslogNg(binary, sink, tuning)
    try:
        peer.start()
        send_lines(peer.port, payload)
        deadline = time.monotonic() + _timeout_for(n)
        while (taken := peer.counter("source;s_bench;", "processed")) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"syslog-ng took {taken}/{n} events into its buffer")
            time.sleep(0.1)
        queued = peer.counter("dst.http", "queued")
        rss_backlog = peer.rss()
        up = time.time()
        sink.start()
        stats = sink.wait_events(n, timeout=_timeout_for(n))
        peer.rss()
        from_up = stats["last_ts"] - up
        from_first = stats["last_ts"] - stats["first_ts"]
        return {
            "events": stats["events"],
            "expected": n,
            "queued_before": queued,
            "event_bytes": EVENT_BYTES,
            "seconds_from_sink_up": from_up,
            "seconds_from_first_receipt": from_first,
            "events_per_s": n / from_first,
            "events_per_s_from_up": n / from_up,
            "requests": stats["requests"],
            "rss_with_backlog_mb": rss_backlog / 1e6,
            "peak_rss_mb": peer.peak_rss / 1e6,
            **peer.figures(),
        }
    finally:
        peer.stop()
        sink.stop()


def run_latency(
    rate: int = 1000, seconds: float = 10.0, tuning: Tuning | None = None
) -> dict[str, Any]:
    """Latency at a steady ``rate``: each line carries its send time; the sink stamps receipt."""
    binary = find_syslog_ng()
    if binary is None:
        return dict(SKIPPED)
    n = int(rate * seconds)
    with Sink(latency=True) as sink, SyslogNg(binary, sink, tuning) as peer:
        with socket.create_connection(("127.0.0.1", peer.port)) as s:

            def send(first: int, last: int, now: float) -> None:
                s.sendall(
                    b"".join((syslog_line(q, now) + "\n").encode() for q in range(first, last))
                )

            paced(n, rate, send)
        sink.wait_events(n, timeout=_timeout_for(n))
        stats = sink.stats(samples=True)
        return {
            "rate": rate,
            "expected": n,
            "batch_timeout_ms": peer.tuning.batch_timeout_ms,
            **latency_figures(stats),
            **peer.figures(),
        }


def run_footprint(
    idle: float = 60.0,
    rate: int = 1000,
    seconds: float = 30.0,
    queued: int = 0,
    later: float = 30.0,
    settle: float = 5.0,
    tuning: Tuning | None = None,
) -> dict[str, Any]:
    """syslog-ng through the phases of bench/footprint.py (bench/_footprint.py), with the
    same keys as the agent's figures: ``idle`` (PSS/USS/RSS, CPU, wake-ups, threads, open
    files over ``idle`` s, after a first batch was delivered and ``settle`` s), ``load``
    (``rate`` lines/s for ``seconds`` on one TCP connection until the sink has them: CPU %
    of one core, CPU-seconds per 1,000 events) and, when ``queued``, ``queued`` (the sink
    down, that many lines taken into the disk buffer: PSS at a quarter, half, all, and
    ``later`` s after)."""
    binary = find_syslog_ng()
    if binary is None:
        return dict(SKIPPED)
    warm = 100  # a first batch delivered: the http() destination is connected
    with Sink() as sink, SyslogNg(binary, sink, tuning) as peer:
        assert peer.proc is not None
        pid = peer.proc.pid
        send_lines(peer.port, syslog_payload(warm, start=10_000_000))
        sink.wait_events(warm, timeout=30)
        time.sleep(settle)
        result: dict[str, Any] = {"idle": _footprint.idle_phase(pid, idle), **peer.figures()}
        with socket.create_connection(("127.0.0.1", peer.port)) as s:

            def send(first: int, last: int, now: float) -> None:
                s.sendall(
                    b"".join((syslog_line(q, now) + "\n").encode() for q in range(first, last))
                )

            def delivered(n: int) -> int:
                return int(sink.wait_events(warm + n, timeout=_timeout_for(n))["events"]) - warm

            idle_cpu = result["idle"]["total"]["cpu_pct"]
            result["load"] = _footprint.load_phase(pid, rate, seconds, send, delivered, idle_cpu)
        if queued:
            sink.stop()  # its port refuses connections from now on
            base = peer.counter("source;s_bench;", "processed")

            def push(first: int, count: int) -> None:
                send_lines(peer.port, syslog_payload(count, start=first))

            def taken(mark: int) -> int:
                deadline = time.monotonic() + _timeout_for(mark)
                while (done := peer.counter("source;s_bench;", "processed") - base) < mark:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"syslog-ng took {done}/{mark} lines into its buffer")
                    time.sleep(0.1)  # polling interval of a deadline-bound wait
                return done

            result["queued"] = _footprint.queued_phase(pid, queued, push, taken, later)
        return result


#: per measurement: run it once, its median's key, one run in words, the median in words
MEASUREMENTS: dict[str, tuple[Any, str, Any, Any]] = {
    "throughput": (
        lambda args, tuning: run_throughput(args.n, tuning),
        "events_per_s",
        lambda r: f"{r['events_per_s']:,.0f} events/s, peak RSS {r['peak_rss_mb']:.1f} MB",
        lambda r: (
            f"syslog-ng durable throughput: {r['events_per_s']:,.0f} events/s "
            f"({r['events']:,}/{r['expected']:,} events of {r['event_bytes']} B in "
            f"{r['seconds']:.2f} s, {r['requests']} requests, peak RSS {r['peak_rss_mb']:.1f} MB, "
            f"CPU syslog-ng {r['peer_cpu_s']:.2f} s / sink {r['sink_cpu_s']:.2f} s)"
        ),
    ),
    "drain": (
        lambda args, tuning: run_drain(args.n, tuning),
        "events_per_s",
        lambda r: f"{r['events_per_s']:,.0f} events/s from first receipt",
        lambda r: (
            f"syslog-ng backlog drain: {r['events_per_s']:,.0f} events/s from first receipt, "
            f"{r['events_per_s_from_up']:,.0f} events/s from sink up "
            f"({r['events']:,}/{r['expected']:,} events, {r['seconds_from_first_receipt']:.2f} s"
            f" / {r['seconds_from_sink_up']:.2f} s; RSS with backlog "
            f"{r['rss_with_backlog_mb']:.1f} MB, peak {r['peak_rss_mb']:.1f} MB)"
        ),
    ),
    "latency": (
        lambda args, tuning: run_latency(args.rate, args.seconds, tuning),
        "p99_ms",
        lambda r: f"p99 {r['p99_ms']:.0f} ms",
        lambda r: (
            f"syslog-ng latency at {r['rate']:,} events/s: p50 {r['p50_ms']:.0f} ms, "
            f"p99 {r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms "
            f"(batch-timeout {r['batch_timeout_ms']} ms; {r['distinct']:,}/{r['expected']:,} events)"
        ),
    ),
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="syslog-ng peer benchmarks")
    parser.add_argument("what", nargs="?", choices=(*MEASUREMENTS, "all"), default="all")
    parser.add_argument("-n", type=int, default=300_000, help="events per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median is reported")
    parser.add_argument("--rate", type=int, default=1000, help="latency: events/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency: run length")
    parser.add_argument("--workers", type=int, default=Tuning.workers)
    parser.add_argument("--batch-lines", type=int, default=Tuning.batch_lines)
    parser.add_argument("--mem-buf-size", type=int, default=None)
    args = parser.parse_args(argv)
    tuning = Tuning(
        workers=args.workers, batch_lines=args.batch_lines, mem_buf_size=args.mem_buf_size
    )
    binary = find_syslog_ng()
    if binary is None:
        print(
            "syslog-ng peer: SKIPPED (syslog-ng or its http module is not installed and "
            f"could not be installed: apt-get install {' '.join(PACKAGES)})"
        )
        print(describe())
        return 0
    print(
        f"{_version(binary)}; {args.n:,} events of {EVENT_BYTES} B per throughput/drain run; "
        f"median of {args.repeat}"
    )
    print(f"tuning: {asdict(tuning)}")
    for what, (measure, key, say_run, say_median) in MEASUREMENTS.items():
        if args.what not in (what, "all"):
            continue
        runs = []
        for i in range(args.repeat):
            runs.append(measure(args, tuning))
            print(f"  run {i + 1}: {say_run(runs[-1])}")
        print(say_median(median_run(runs, key)))
        unit = " (p99 ms)" if key == "p99_ms" else ""
        print(f"  all runs{unit}: {[round(r[key]) for r in runs]}")
        print(describe())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
