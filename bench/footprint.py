"""Whole-agent footprint: memory, CPU, wake-ups idle, at 1,000 events/s, with 1M queued.

    python -m bench.footprint [--idle 60] [--load-seconds 30] [--rate 1000]
        [--queued 1000000] [--later 30] [--install plain|dev|both]
        [--isolation thread|process|both] [--no-peer] [--settle 5] [--start-timeout 600]

    # quick (~2 minutes with the peer; the default run takes ~12):
    python -m bench.footprint --idle 10 --load-seconds 5 --queued 50000
        --install plain --isolation process

The way a new user runs it: a reference server (``agentbus server``, its own default
long-poll hold, so the commander's poll stays open), an agent enrolled with it, then
``agentbus run`` with the packaged defaults (core/default.toml) except ``data_dir``,
``run_dir``, ``server_url`` and ``[agent] isolation``: every built-in collector enabled,
logcollector on a temporary log file, fim on a small temporary directory (so its first
scan is short), inventory as shipped. Once every service answers ``agentbus status
--json`` (exit 0), the first inventory and fim scans are done (``scans`` ≥ 1), the
forwarder's queue is empty and ``--settle`` seconds have passed, three phases follow,
each measured over every process of the agent (the supervisor and its descendants, named
from their command lines: ``agent (supervisor)`` or the service):

1. **idle** (``--idle`` s): PSS, USS and RSS at the end (``/proc/<pid>/smaps_rollup``;
   USS = Private_Clean + Private_Dirty), CPU % of one core over the window, wake-ups/s
   (context switches of every thread), threads and open files (``/proc/<pid>/fd``).
2. **load**: ``--rate`` events/s for ``--load-seconds`` s, 10 events every 10 ms on the
   bus's fast path (``bus.Publisher``, the collector SDK), delivered to the server. The
   window runs from the first send until the server has every event; the agent's CPU over
   it as % of one core and in CPU-seconds per 1,000 events (also net of the idle rate).
   The sender is this benchmark's own process, not part of the agent: not counted.
3. **queued** (``--queued`` events, 0 = skip): the reference server is stopped (its port
   refuses connections), the events are pushed in frames of 100 (pre-encoded, as fast as
   the forwarder takes them), and the whole agent's PSS is read once ``agentbus status``
   shows a quarter, half and all of them on disk, then ``--later`` s after, with the peak
   of a 0.5 s sampler throughout.

``--install``: ``plain`` hides the reference server's packages (``cryptography``, ``fastapi``,
``uvicorn``, ``starlette``, ``pydantic``; bench/runner.py ``NOT_IN_PLAIN_INSTALL``) from
the agent's processes through a ``sitecustomize`` on ``PYTHONPATH``, as a ``pip install
agentbus`` without the [server] extra has it (pyjwt imports ``cryptography`` when present);
``dev`` is the venv as it is. ``--isolation``: ``[agent] isolation`` in the agent's
config; the report lists whatever processes that gives.

The syslog-ng peer (bench/peer_syslog_ng.py ``run_footprint``: its disk-buffered
``http()`` pipeline to the benchmark sink) goes through the same three phases, with its
own TCP source as input; skipped with the reason when syslog-ng is not installable.
Targets: idle ≤ 60 MB PSS (plain install) and ≤ 0.2 % of one core; ≤ 3 % of one core at
1,000 events/s; ≤ 80 MB PSS with 1,000,000 events queued.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench import _footprint
from bench._footprint import Row
from bench.events import bus_event
from bench.machine import describe
from bench.peer_syslog_ng import run_footprint as peer_footprint
from bench.runner import NOT_IN_PLAIN_INSTALL, frames, plain_install_env, push_frames
from bus import Publisher
from core.config import Config, load_config
from core.service import endpoints_from_config
from refserver.options import DEFAULT_COMMAND_HOLD
from tests.fixtures.agent import enroll_with
from tests.fixtures.refserver import REPO, RefServer
from tests.fixtures.run import clean_env

FACTS = {"hostname": "bench", "architecture": "x86_64", "ip": ["192.0.2.1"],
         "os": {"name": "Debian GNU/Linux", "type": "Linux", "version": "12"}}  # fmt: skip
#: the targets (the whole agent); the idle PSS one is for the plain install
TARGET_IDLE_PSS_MB = 60.0
TARGET_IDLE_CPU_PCT = 0.2
TARGET_LOAD_CPU_PCT = 3.0
TARGET_QUEUED_PSS_MB = 80.0
#: files in the fim directory (small: the first scan is short)
FIM_FILES = 50
INSTALLS = {
    "plain": f"plain install (hidden: {', '.join(NOT_IN_PLAIN_INSTALL)})",
    "dev": "dev venv as it is",
}
ISOLATIONS = ("thread", "process")
#: the queued phase pushes frames in slices of this many events (bounded bench memory)
SLICE = 50_000
#: the module of the benchmark events (the server counts them by it)
MODULE = "logcollector"


@dataclass(frozen=True)
class Flavour:
    install: str  # plain | dev
    isolation: str  # thread | process

    def __str__(self) -> str:
        return f"agentbus {self.install}, {self.isolation}"


# --------------------------------------------------------------------------- the agent


def write_agent_config(tmp: Path, server_url: str, isolation: str) -> Path:
    """The packaged defaults but for the dirs, the server, the isolation and the two
    collectors' paths."""
    log_file = tmp / "watched.log"
    log_file.write_text("".join(f"Jan  1 00:00:{i:02d} bench app: line {i}\n" for i in range(10)))
    fim_dir = tmp / "fim"
    fim_dir.mkdir()
    for i in range(FIM_FILES):
        (fim_dir / f"file{i:03d}.conf").write_text(f"key{i} = value {i}\n" * 20)
    path = tmp / "agentbus.toml"
    path.write_text(
        "[agent]\n"
        f"server_url = {json.dumps(server_url)}\n"
        f"data_dir = {json.dumps(str(tmp / 'data'))}\n"
        f"run_dir = {json.dumps(str(tmp / 'run'))}\n"
        f"isolation = {json.dumps(isolation)}\n"
        "\n[collectors.logcollector]\n"
        f"paths = [{json.dumps(str(log_file))}]\n"
        "\n[collectors.fim]\n"
        f"paths = [{json.dumps(str(fim_dir))}]\n"
    )
    return path


def agent_env(tmp: Path, install: str) -> dict[str, str]:
    env = clean_env()
    return plain_install_env(tmp / "plain-install", env) if install == "plain" else env


def agentbus_status(config_file: Path, env: dict[str, str]) -> tuple[int, dict[str, Any] | None]:
    """``agentbus status --json``: its exit code and report (None when it printed no JSON)."""
    out = subprocess.run(
        [sys.executable, "-m", "agent.main", "status", "--json", "--config", str(config_file)],
        capture_output=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    try:
        return out.returncode, json.loads(out.stdout)
    except ValueError:
        return out.returncode, None


def counter(report: dict[str, Any], service: str, key: str) -> int:
    """A service's counter in a status report (a labelled one: its total; absent: 0)."""
    value = report["services"].get(service, {}).get("counters", {}).get(key, 0)
    if isinstance(value, dict):
        return int(sum(value.values()))
    return int(value or 0)


class Agent:
    """``agentbus run`` as a user starts it, in the foreground, its output to a log file."""

    def __init__(self, config_file: Path, env: dict[str, str], log: Path) -> None:
        self.config_file, self.env, self.log = config_file, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Agent:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent.main", "run", "--config", str(self.config_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=REPO,
            )
        return self

    def status(self) -> tuple[int, dict[str, Any] | None]:
        return agentbus_status(self.config_file, self.env)

    def wait(self, ok: Callable[[int, dict[str, Any]], str | None], timeout: float) -> str:
        """Poll ``agentbus status`` until ``ok(exit code, report)`` returns a description."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"agentbus run exited with {self.proc.returncode}:\n{self.log.read_text()}"
                )
            code, report = self.status()
            if report is not None:
                done = ok(code, report)
                if done is not None:
                    return done
                last = f"status exit {code}, down {report['summary']['down']}"
            time.sleep(0.5)  # polling interval of a deadline-bound wait
        raise RuntimeError(f"timed out after {timeout:.0f} s: {last}\n{self.log_tail()}")

    def wait_ready(self, timeout: float) -> str:
        """Every service up, the first inventory and fim scans done, the forwarder's queue
        empty."""

        def ready(code: int, report: dict[str, Any]) -> str | None:
            inv, fim = counter(report, "inventory", "scans"), counter(report, "fim", "scans")
            queued = counter(report, "forwarder", "queue_events")
            if code == 0 and inv >= 1 and fim >= 1 and queued == 0:
                return f"scans inventory {inv} fim {fim}, forwarder queue {queued}"
            return None

        return self.wait(ready, timeout)

    def wait_queued(self, n: int, timeout: float) -> int:
        """The forwarder's ``queue_events`` once it is at least ``n``."""

        def queued(_code: int, report: dict[str, Any]) -> str | None:
            value = counter(report, "forwarder", "queue_events")
            return str(value) if value >= n else None

        return int(self.wait(queued, timeout))

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the supervisor, wait; any process of the agent still alive is killed."""
        if self.proc is None:
            return
        try:
            family = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            family = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
            print(f"agentbus run stopped (exit {code})")
        except subprocess.TimeoutExpired:
            print("agentbus run did not stop in time: killed")
            self.proc.kill()
            self.proc.wait()
        _, alive = psutil.wait_procs(family, timeout=10)
        for p in alive:
            print(f"process {p.pid} of the agent outlived the supervisor: killed")
            try:
                p.kill()
            except psutil.Error:
                pass


# --------------------------------------------------------------------------- phases


def measure_load(
    pid: int, config: Config, server: RefServer, rate: int, seconds: float, idle_cpu_pct: float
) -> dict[str, Any]:
    """``rate`` events/s for ``seconds`` on the bus's fast path, until the server has them."""
    before = server.count_events(module=MODULE)
    with Publisher(endpoints_from_config(config).events) as pub:

        def send(first: int, last: int, now: float) -> None:
            pub.send_batch([bus_event(q, sent=now) for q in range(first, last)])

        def delivered(n: int) -> int:
            return server.wait_for_events(before + n, module=MODULE, timeout=60 + seconds) - before

        return _footprint.load_phase(pid, rate, seconds, send, delivered, idle_cpu_pct)


def measure_queued(
    agent: Agent, config: Config, server: RefServer, n: int, later: float
) -> dict[str, Any]:
    """The server stopped, ``n`` events pushed: the agent's PSS as they pile up on disk."""
    server.stop()  # its port refuses connections from now on
    endpoint = endpoints_from_config(config).events
    base = agent.wait_queued(0, timeout=60)

    def push(first: int, count: int) -> None:
        push_frames(endpoint, frames(count, start=first))

    def queued(mark: int) -> int:
        return agent.wait_queued(base + mark, timeout=120 + mark / 5_000) - base

    return _footprint.queued_phase(agent.pid, n, push, queued, later, SLICE)


def with_cryptography(pid: int) -> list[str]:
    """The agent's processes that imported ``cryptography`` (a check of ``--install``)."""
    out = []
    for p in _footprint.tree(pid):
        try:
            if _footprint.maps_package(p.pid, "cryptography"):
                out.append(_footprint.process_name(p.cmdline()))
        except (OSError, psutil.Error):
            continue
    return out


def run_flavour(flavour: Flavour, args: argparse.Namespace) -> dict[str, Any]:
    """Start a server and an agent of this flavour, measure the three phases, stop both."""
    print(f"\n===== {flavour}: {INSTALLS[flavour.install]}, isolation = {flavour.isolation!r}")
    print(describe(), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="ab-fp-", dir="/tmp"))  # short: ipc paths
    server = RefServer(tmp / "server", command_hold=DEFAULT_COMMAND_HOLD)
    agent: Agent | None = None
    result: dict[str, Any] = {"label": str(flavour), "install": flavour.install}
    try:
        server.start()
        config_file = write_agent_config(tmp, server.url, flavour.isolation)
        config = load_config(config_file, environ={})
        enroll_with(server, config, "bench", facts=FACTS, uuid_version=4)
        agent = Agent(config_file, agent_env(tmp, flavour.install), tmp / "agent.log").start()
        started = time.monotonic()
        how = agent.wait_ready(args.start_timeout)
        print(
            f"agentbus run pid {agent.pid}: ready after {time.monotonic() - started:.1f} s ({how})"
        )
        time.sleep(args.settle)  # let the first scans' delivery and start-up work finish
        print(f"processes with cryptography loaded: {with_cryptography(agent.pid) or 'none'}")
        print(f"idle: {args.idle:.0f} s ...", flush=True)
        result["idle"] = _footprint.idle_phase(agent.pid, args.idle)
        print(f"load: {args.rate:,} events/s for {args.load_seconds:.0f} s ...", flush=True)
        idle_cpu = result["idle"]["total"]["cpu_pct"]
        result["load"] = measure_load(
            agent.pid, config, server, args.rate, args.load_seconds, idle_cpu
        )
        if args.queued:
            print(f"queued: server stopped, {args.queued:,} events pushed ...", flush=True)
            result["queued"] = measure_queued(agent, config, server, args.queued, args.later)
        code, _ = agent.status()
        print(f"agentbus status at the end: exit {code}")
        print(process_table(result))
        print(verdicts(result))
    except Exception as exc:  # one flavour failing must not hide the others' figures
        traceback.print_exc()
        result["error"] = f"{type(exc).__name__}: {exc}"
        if agent is not None:
            print(f"agent log (tail):\n{agent.log_tail()}")
    finally:
        if agent is not None:
            agent.stop()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return result


# --------------------------------------------------------------------------- report


def _f(value: float | None, fmt: str, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{fmt}}"


def process_table(result: dict[str, Any], whole: str = "whole agent") -> str:
    """Per process (every pid seen in a phase): the idle figures, CPU and wake-ups at the
    load's rate, PSS with the backlog queued; ``-`` where a process was not there."""
    phases = [
        {r["pid"]: r for r in result[k]["rows"]} if k in result else {}
        for k in ("idle", "load", "queued")
    ]
    idle, load, queued = phases
    head = (
        f"{'process':<20} {'pid':>7} {'PSS MB':>7} {'USS MB':>7} {'RSS MB':>7} {'CPU %':>6} "
        f"{'wake/s':>7} {'thr':>4} {'fds':>4} | {'load CPU %':>10} {'wake/s':>7} | "
        f"{'PSS MB queued':>13}"
    )
    lines = [
        "idle (memory, threads, fds at its end) | at the load's rate | "
        "with the backlog queued, at the end",
        head,
        "-" * len(head),
    ]

    def line(name: str, pid: str, r: Row | None, ld: Row | None, q: Row | None) -> str:
        def f(row: Row | None, key: str, fmt: str, width: int) -> str:
            return f"{'-':>{width}}" if row is None else f"{row[key]:>{width}{fmt}}"

        return (
            f"{name:<20} {pid:>7} {f(r, 'pss_mb', '.1f', 7)} {f(r, 'uss_mb', '.1f', 7)} "
            f"{f(r, 'rss_mb', '.1f', 7)} {f(r, 'cpu_pct', '.2f', 6)} {f(r, 'wakeups', '.1f', 7)} "
            f"{f(r, 'threads', '', 4)} {f(r, 'fds', '', 4)} | {f(ld, 'cpu_pct', '.2f', 10)} "
            f"{f(ld, 'wakeups', '.1f', 7)} | {f(q, 'pss_mb', '.1f', 13)}"
        )

    pids = list(dict.fromkeys([*idle, *load, *queued]))  # in order of appearance
    for pid in pids:
        name = next(p[pid]["name"] for p in phases if pid in p)
        lines.append(line(name, str(pid), idle.get(pid), load.get(pid), queued.get(pid)))
    lines.append("-" * len(head))
    totals = [_footprint.total(list(p.values())) if p else None for p in phases]
    count = f"{len(idle)} pr."
    lines.append(line(whole, count, *totals))
    return "\n".join(lines)


def _times(value: float, target: float) -> str:
    return f"{'met' if value <= target else 'NOT met'}, {value / target:.1f}x the target"


def verdicts(result: dict[str, Any]) -> str:
    """The whole-agent figures of one run beside their targets, in words."""
    idle = result["idle"]["total"]
    pss_target = (
        f"the target <= {TARGET_IDLE_PSS_MB:.0f} MB is for the plain install"
        if result.get("install") == "dev"
        else f"target <= {TARGET_IDLE_PSS_MB:.0f} MB: {_times(idle['pss_mb'], TARGET_IDLE_PSS_MB)}"
    )
    lines = [
        f"idle {result['idle']['seconds']:.0f} s: PSS {idle['pss_mb']:.1f} MB ({pss_target}); "
        f"CPU {idle['cpu_pct']:.2f} % of one core (target <= {TARGET_IDLE_CPU_PCT} %: "
        f"{_times(idle['cpu_pct'], TARGET_IDLE_CPU_PCT)}); {idle['wakeups']:.1f} wake-ups/s; "
        f"{idle['threads']} threads, {idle['fds']} open files in {idle['processes']} processes"
    ]
    if "load" in result:
        ld = result["load"]
        lines.append(
            f"at {ld['rate']:,} events/s ({ld['delivered']:,}/{ld['events']:,} delivered, "
            f"window {ld['seconds']:.1f} s): CPU {ld['cpu_pct']:.2f} % of one core (target <= "
            f"{TARGET_LOAD_CPU_PCT:.0f} %: {_times(ld['cpu_pct'], TARGET_LOAD_CPU_PCT)}) = "
            f"{ld['per_1000']:.4f} CPU-s per 1,000 events; net of the idle rate "
            f"{ld['net_per_1000']:.4f} CPU-s per 1,000 events"
        )
    if "queued" in result:
        q = result["queued"]
        points = ", ".join(f"{pss:.1f} MB at {what} ({n:,})" for what, n, pss in q["points"])
        last = q["points"][-1][2]
        lines.append(
            f"{q['n']:,} events queued on disk: PSS {points}; peak {q['peak_mb']:.1f} MB "
            f"(target <= {TARGET_QUEUED_PSS_MB:.0f} MB: "
            f"{_times(max(last, q['peak_mb']), TARGET_QUEUED_PSS_MB)} by the peak); taken in at "
            f"{q['ingest_eps']:,.0f} events/s (waits at the marks included); CPU over the last "
            f"{q['later']:.0f} s with the backlog and no server: "
            f"{_footprint.total(q['rows'])['cpu_pct']:.2f} % of one core"
        )
    return "\n".join(lines)


def summary_table(results: list[dict[str, Any]]) -> str:
    """One line per run (every flavour, then the peer): the whole agent's figures."""
    head = (
        f"{'run':<26} {'procs':>5} {'PSS MB':>7} {'USS MB':>7} {'RSS MB':>7} {'CPU %':>6} "
        f"{'wake/s':>7} {'thr':>4} {'fds':>4} | {'CPU % load':>10} {'CPU-s/1k':>8} | "
        f"{'PSS MB queued: 1/4, 1/2, all, later':<36} {'peak':>6}"
    )
    lines = [
        "summary (idle | at the load's rate: CPU % of one core, CPU-seconds per 1,000 events | "
        "with the backlog on disk)",
        head,
        "-" * len(head),
    ]
    for r in results:
        if "error" in r or "skipped" in r:
            why = r.get("error") or f"skipped: {r['skipped']}"
            lines.append(f"{r['label']:<26} {why}")
            continue
        t = r["idle"]["total"]
        ld = r.get("load")
        q = r.get("queued")
        marks = ", ".join(f"{p[2]:.1f}" for p in q["points"]) if q else "-"
        lines.append(
            f"{r['label']:<26} {t['processes']:>5} {t['pss_mb']:>7.1f} {t['uss_mb']:>7.1f} "
            f"{t['rss_mb']:>7.1f} {t['cpu_pct']:>6.2f} {t['wakeups']:>7.1f} {t['threads']:>4} "
            f"{t['fds']:>4} | {_f(ld['cpu_pct'] if ld else None, '.2f', 10)} "
            f"{_f(ld['per_1000'] if ld else None, '.4f', 8)} | {marks:<36} "
            f"{_f(q['peak_mb'] if q else None, '.1f', 6)}"
        )
    lines.append("-" * len(head))
    lines.append(
        f"{'target':<26} {'':>5} {'<= ' + format(TARGET_IDLE_PSS_MB, '.0f'):>7} {'':>7} {'':>7} "
        f"{'<= ' + str(TARGET_IDLE_CPU_PCT):>6} {'':>7} {'':>4} {'':>4} | "
        f"{'<= ' + format(TARGET_LOAD_CPU_PCT, '.0f'):>10} {'':>8} | "
        f"{'<= ' + format(TARGET_QUEUED_PSS_MB, '.0f') + ' (1,000,000 queued)':<36}"
    )
    lines.append(
        "(PSS target: plain install; RSS double-counts pages shared between processes; "
        "USS = private pages; wake/s = context switches of every thread)"
    )
    return "\n".join(lines)


def run_peer(args: argparse.Namespace) -> dict[str, Any]:
    print("\n===== syslog-ng (the peer): the same phases", flush=True)
    print(describe(), flush=True)
    try:
        r = peer_footprint(
            idle=args.idle,
            rate=args.rate,
            seconds=args.load_seconds,
            queued=args.queued,
            later=args.later,
            settle=args.settle,
        )
    except Exception as exc:
        traceback.print_exc()
        return {"label": "syslog-ng", "error": f"{type(exc).__name__}: {exc}"}
    if "skipped" in r:
        print(f"syslog-ng skipped: {r['skipped']}")
        return {"label": "syslog-ng", **r}
    r["label"] = r["peer"]
    r["install"] = "peer"
    print(process_table(r, "total"))
    print(verdicts(r))
    return r


def flavours(install: str, isolation: str) -> list[Flavour]:
    installs = ("plain", "dev") if install == "both" else (install,)
    isolations = ISOLATIONS if isolation == "both" else (isolation,)
    return [Flavour(i, s) for i in installs for s in isolations]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--idle", type=float, default=60.0, help="idle window, seconds")
    parser.add_argument("--load-seconds", type=float, default=30.0, help="load phase, seconds")
    parser.add_argument("--rate", type=int, default=1000, help="load phase, events/s")
    parser.add_argument(
        "--queued", type=int, default=1_000_000, help="events queued on disk (0: no such phase)"
    )
    parser.add_argument(
        "--later", type=float, default=30.0, help="seconds after the backlog is all queued"
    )
    parser.add_argument("--install", choices=("plain", "dev", "both"), default="both")
    parser.add_argument("--isolation", choices=(*ISOLATIONS, "both"), default="both")
    parser.add_argument("--no-peer", action="store_true", help="agentbus only, no syslog-ng")
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds between ready and the idle window"
    )
    parser.add_argument(
        "--start-timeout", type=float, default=600.0, help="seconds to wait for readiness"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(describe(), flush=True)
    print(
        f"idle {args.idle:.0f} s; load {args.rate:,} events/s for {args.load_seconds:.0f} s; "
        f"queued {args.queued:,} events (then {args.later:.0f} s); install {args.install}, "
        f"isolation {args.isolation}; peer {'no' if args.no_peer else 'syslog-ng'}",
        flush=True,
    )
    results = [run_flavour(f, args) for f in flavours(args.install, args.isolation)]
    if not args.no_peer:
        results.append(run_peer(args))
    print()
    print(summary_table(results))
    print(describe())
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
