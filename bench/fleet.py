"""Fleet: N simulated agents against one reference server, and the herd after a restart.

    python -m bench.fleet [--agents 500] [--outage 30] [--observe 60] [--hold 15]
                           [--eps 2] [--interval 5] [--compare]

Each simulated agent is the agent's own client code in threads of this one process (not N
processes): it enrolls (``comms.enroll``), authenticates (``TokenManager``) and talks to the
server through its own ``ServerClient`` and keep-alive session; it long-polls commands with
the commander's ``Poller`` (commands are stored in its own ``commands.db``) and sends
``--eps`` stateless events per second in one POST every ``--interval`` seconds, retrying
with the forwarder's ``Backoff`` (exponential, full jitter; the poller's is "equal"
jitter: between half and all of the ceiling). Both start at 1 s and cap at 60 s, the
defaults of ``core/default.toml``.

Phases: enroll all agents; run ``--warmup`` seconds (steady state: events/s, requests/s,
POST latency, one command fanned out to every agent through the held long-polls); stop the
server (SIGTERM), keep it down ``--outage`` seconds, start it again on the same port and
data dir; observe ``--observe`` seconds. Measured: the requests the agents make per second
(every HTTP attempt, counted client-side in 1-s buckets from the moment the server answers
again; the server's own request counters sampled every second as a cross-check), the peak
second against N, and how long until every agent got an events POST and a long-poll
through again. ``--compare`` repeats the outage with jitter turned off (every agent waits
the full ceiling) to show the herd that jitter prevents.

The server is a subprocess (``agentbus server`` on a free loopback port, PBKDF2 lowered to
1000 rounds so enrolling 500 agents is quick); it and every thread are stopped at the end,
and the whole run is bounded in time. The script raises its soft open-files limit to the
hard limit (the server inherits it) and prints the limits in force.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from loguru import logger

import commander.poller
from bench.machine import describe
from commander.metrics import COMMANDER
from commander.poller import Poller
from commander.store import CommandStore
from comms.api import ServerClient
from comms.credentials import Credentials
from comms.errors import ServerError
from comms.http import make_session
from comms.metadata import agent_line
from comms.ndjson import join_body
from comms.tokens import TokenManager
from core.config import Config, config_from_dict
from core.metrics import Registry
from forwarder.backoff import Backoff
from tests.fixtures.agent import enroll_with
from tests.fixtures.refserver import RefServer

GROUP = "fleet"
FACTS = {"hostname": "fleet", "architecture": "x86_64", "ip": ["192.0.2.1"],
         "os": {"name": "Debian GNU/Linux", "type": "Linux", "version": "12"}}  # fmt: skip
#: one rendered ~300-byte stateless event (header + data line)
EVENT = (
    b'{"module":"logcollector","collector":"file"}\n'
    b'{"event":{"original":"' + b"x" * 220 + b'"},"log":{"file":{"path":"/var/log/fleet"}}}'
)
#: most events one POST carries (a backlog after the outage is sent in one body)
MAX_BATCH = 2000
#: thread stack size: 1,000+ threads that only wait on sockets need little
STACK = 512 * 1024


class RequestLog:
    """Every HTTP attempt of every agent: (start time, agent, kind, status; 0 = no answer)."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, int, str, int]] = []  # list.append is atomic

    def instrument(self, session: Any, agent: int) -> None:
        send = session.request
        rows = self.rows

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            kind = (
                "auth"
                if url.endswith("/authentication")
                else "events"
                if "/events/" in url
                else "commands"
            )
            started = time.monotonic()
            try:
                response = send(method, url, *args, **kwargs)
            except Exception:
                rows.append((started, agent, kind, 0))
                raise
            rows.append((started, agent, kind, response.status_code))
            return response

        session.request = request


class NoJitter:
    """Stands in for ``random`` in the poller: always the full ceiling (for --compare)."""

    @staticmethod
    def uniform(_low: float, high: float) -> float:
        return high


class SimAgent:
    """One agent: the commander's long-poll loop and an events sender with the forwarder's
    back-off, both on the agent's own ServerClient."""

    def __init__(
        self,
        index: int,
        config: Config,
        credentials: Credentials,
        log: RequestLog,
        stop: threading.Event,
        args: argparse.Namespace,
    ) -> None:
        self.index = index
        self.stop = stop
        self.eps = args.eps
        self.interval = args.interval
        session = make_session(config, pool_size=2)
        log.instrument(session, index)
        tokens = TokenManager(config, credentials, session)
        self.client = ServerClient(config, tokens, session)
        self.line = agent_line(credentials.with_groups((GROUP,)), facts=FACTS)
        self.backoff = Backoff(config.forwarder.backoff_initial, config.forwarder.backoff_max)
        self.commands: list[float] = []  # monotonic receipt time of each command
        self.sent = 0
        self.poller = Poller(
            self.client,
            CommandStore(config.data_dir / "commands.db"),
            Registry(COMMANDER),
            stop,
            lambda cmds: self.commands.extend(time.monotonic() for _ in cmds),
            request_timeout=args.hold + 30,
            command_timeout=600,
            backoff_initial=config.commander.backoff_initial,
            backoff_max=config.commander.backoff_max,
        )
        self.thread = threading.Thread(target=self._send_loop, name=f"sender-{index}", daemon=True)

    def start(self) -> None:
        self.poller.start()
        self.thread.start()

    def _send_loop(self) -> None:
        # a random phase, like agents started at different times
        cut = time.monotonic()
        due = cut + random.uniform(0, self.interval)
        retrying = False
        while not self.stop.is_set():
            if not retrying and self.stop.wait(max(0.0, due - time.monotonic())):
                return
            ticket = self.backoff.acquire(self.stop)
            if ticket is None:
                return
            now = time.monotonic()
            n = max(1, min(MAX_BATCH, int((now - cut) * self.eps)))
            try:
                reply = self.client.post_events("stateless", join_body(self.line, [EVENT] * n))
            except ServerError as exc:
                self.backoff.failure(ticket, getattr(exc, "retry_after", None))
                retrying = True
                continue
            if reply.ok:
                self.backoff.success(ticket)
                self.sent += n
                cut, retrying = now, False
                due = max(due + self.interval, time.monotonic())
            else:
                self.backoff.failure(ticket, reply.retry_after())
                retrying = True


# -- set-up ---------------------------------------------------------------------------------
def raise_open_files() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def process_limits(pid: int) -> str:
    wanted = ("Max open files", "Max processes")
    try:
        lines = Path(f"/proc/{pid}/limits").read_text().splitlines()
    except OSError:
        return "n/a"
    out = []
    for line in lines:
        for name in wanted:
            if line.startswith(name):
                soft = line[len(name) :].split()[0]
                out.append(f"{name.lower()} {soft}")
    return ", ".join(out)


def agent_config(base: Path, index: int, url: str) -> Config:
    return config_from_dict(
        {
            "agent": {
                "data_dir": str(base / f"a{index}"),
                "run_dir": str(base / "run"),
                "server_url": url,
            },
            "log": {"level": "ERROR"},
        }
    )


def enroll_fleet(base: Path, server: RefServer, n: int) -> list[tuple[Config, Credentials]]:
    def one(index: int) -> tuple[Config, Credentials]:
        config = agent_config(base, index, server.url)
        # v4 at once: the server refuses v7 ids, and the automatic v7 -> v4 retry would
        # double the enrollment requests this benchmark times
        return config, enroll_with(server, config, f"fleet-{index}", facts=FACTS, uuid_version=4)

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


# -- measuring ------------------------------------------------------------------------------
def server_requests(server: RefServer) -> int:
    """Comms requests the server has seen since it started (admin calls left out)."""
    stats = server.admin.stats()
    return sum(r["count"] for r in stats["requests"] if r["path"].startswith("/api/v1/"))


def _fds(pid: int | str | None) -> int | str:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return "n/a"


def steady_state(
    server: RefServer, agents: list[SimAgent], log: RequestLog, seconds: float
) -> dict[str, Any]:
    start = time.monotonic()
    events0 = server.count_events()
    rows0 = len(log.rows)
    time.sleep(seconds)  # the fleet works on its own meanwhile; this is the window measured
    elapsed = time.monotonic() - start
    events = server.count_events() - events0
    rows = log.rows[rows0:]
    posts = [r for r in rows if r[2] == "events"]
    # command fan-out: one admin call queues a command for every agent of the group
    before = [len(a.commands) for a in agents]
    queued = time.monotonic()
    ids = server.queue_command(group=GROUP, name="fleet-ping")
    deadline = queued + 60
    while time.monotonic() < deadline:
        if all(len(a.commands) > b for a, b in zip(agents, before, strict=True)):
            break
        time.sleep(0.05)  # polling interval of a deadline-bound wait
    got = [
        a.commands[b] - queued for a, b in zip(agents, before, strict=True) if len(a.commands) > b
    ]
    got.sort()
    return {
        "fds": f"this process {_fds('self')}, server {_fds(server.pid)}",
        "seconds": elapsed,
        "events_per_s": events / elapsed,
        "requests_per_s": len(rows) / elapsed,
        "posts_per_s": len(posts) / elapsed,
        "post_errors": sum(1 for r in posts if not 200 <= r[3] < 300),
        "commands_queued": len(ids),
        "commands_received": len(got),
        "fanout_p50": got[len(got) // 2] if got else None,
        "fanout_max": got[-1] if got else None,
    }


def outage(
    server: RefServer,
    agents: list[SimAgent],
    log: RequestLog,
    args: argparse.Namespace,
    label: str,
) -> dict[str, Any]:
    n = len(agents)
    server.stop()
    down = time.monotonic()
    time.sleep(args.outage)  # the outage itself: the server is down for exactly this long
    server.start()
    up = time.monotonic()
    # the server's own count, sampled every second (it starts from zero after a restart)
    samples = [(up, server_requests(server))]
    end = up + args.observe
    while time.monotonic() < end:
        time.sleep(max(0.0, samples[-1][0] + 1.0 - time.monotonic()))  # 1-s sampling tick
        samples.append((time.monotonic(), server_requests(server)))
    # A long-poll is logged when it ends: give the ones started in the window time to end.
    time.sleep(args.hold + 2)
    rows = [r for r in log.rows if r[0] >= down]
    during = [r for r in rows if r[0] < up]
    after = [r for r in rows if r[0] >= up]
    buckets = int(args.observe)
    curve: list[Counter[str]] = [Counter() for _ in range(buckets)]
    for t, _agent, kind, _status in after:
        second = int(t - up)
        if second < buckets:
            curve[second][kind] += 1
    first_ok: dict[str, dict[int, float]] = {"events": {}, "commands": {}}
    for t, agent, kind, status in after:
        ok = 200 <= status < 300 if kind == "events" else status in (200, 408)
        if kind in first_ok and ok and agent not in first_ok[kind]:
            first_ok[kind][agent] = t - up
    # a held long-poll is counted when it ends: its start is the attempt that got through
    server_curve = [b - a for (_, a), (_, b) in zip(samples, samples[1:], strict=False)]
    totals = [sum(c.values()) for c in curve]
    return {
        "label": label,
        "agents": n,
        "outage_s": up - down,
        "attempts_during_outage": len(during),
        "attempts_during_outage_per_s": len(during) / max(up - down, 1e-9),
        "curve": curve,
        "totals": totals,
        "server_curve": server_curve,
        "peak": max(totals) if totals else 0,
        "peak_second": totals.index(max(totals)) if totals else None,
        "first5": sum(totals[:5]),
        "back_events": _quantiles(sorted(first_ok["events"].values()), n),
        "back_commands": _quantiles(sorted(first_ok["commands"].values()), n),
    }


def _quantiles(times: list[float], n: int) -> dict[str, Any]:
    def at(share: float) -> float | None:
        k = int(share * n + 0.999999) - 1
        return times[k] if 0 <= k < len(times) else None

    return {"count": len(times), "p50": at(0.5), "p90": at(0.9), "all": at(1.0)}


# -- report ---------------------------------------------------------------------------------
def _fmt(value: float | None, unit: str = "s") -> str:
    return "—" if value is None else f"{value:.1f} {unit}"


def print_outage(r: dict[str, Any], steady: float) -> None:
    n = r["agents"]
    print(f"\n== outage: {r['label']} ==")
    print(
        f"server down {r['outage_s']:.1f} s; {r['attempts_during_outage']} attempts while down "
        f"({r['attempts_during_outage_per_s']:.1f}/s for {n} agents, {2 * n} loops)"
    )
    print(
        f"after restart: peak {r['peak']} requests in second {r['peak_second']} "
        f"({r['peak'] / n:.2f} x N, {r['peak'] / steady:.1f} x the steady state's "
        f"{steady:.0f}/s); first 5 s: {r['first5']} requests ({r['first5'] / n:.2f} x N)"
    )
    for kind in ("events", "commands"):
        q = r[f"back_{kind}"]
        print(
            f"  agents whose {kind} got through again: {q['count']}/{n}; 50 % after "
            f"{_fmt(q['p50'])}, 90 % after {_fmt(q['p90'])}, all after {_fmt(q['all'])}"
        )
    print("  second  client attempts (events/commands/auth)      server-counted   curve")
    width = max(r["totals"]) or 1
    for second, (counter, total) in enumerate(zip(r["curve"], r["totals"], strict=True)):
        server = r["server_curve"][second] if second < len(r["server_curve"]) else ""
        bar = "#" * max(0, round(40 * total / width))
        print(
            f"  {second:>6}  {total:>5} ({counter['events']:>4}/{counter['commands']:>4}/"
            f"{counter['auth']:>3})                  {server!s:>6}   {bar}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the server is down")
    parser.add_argument("--observe", type=float, default=60.0, help="seconds after the restart")
    parser.add_argument("--warmup", type=float, default=20.0, help="steady-state seconds")
    parser.add_argument("--hold", type=float, default=15.0, help="server long-poll hold (s)")
    parser.add_argument("--eps", type=float, default=2.0, help="events per second per agent")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between POSTs")
    parser.add_argument(
        "--compare", action="store_true", help="repeat the outage with jitter turned off"
    )
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="ERROR")
    threading.stack_size(STACK)
    soft, hard = raise_open_files()
    started = time.monotonic()
    print(describe())
    print(
        f"fleet: {args.agents} agents, {args.eps:g} events/s each in one POST every "
        f"{args.interval:g} s, server long-poll hold {args.hold:g} s, outage {args.outage:g} s, "
        f"observed {args.observe:g} s after the restart; back-off 1 s doubling to 60 s"
    )
    print(f"limits: this process open files {soft} (hard {hard}); threads-max "
          f"{Path('/proc/sys/kernel/threads-max').read_text().strip()}")  # fmt: skip

    base = Path(tempfile.mkdtemp(prefix="fleet-"))
    stop = threading.Event()
    server = RefServer(base / "server", command_hold=args.hold, key_hash_rounds=1000)
    agents: list[SimAgent] = []
    try:
        server.start()
        print(f"server: pid {server.pid}, {server.url}; limits: {process_limits(server.pid or 0)}")
        t0 = time.monotonic()
        enrolled = enroll_fleet(base, server, args.agents)
        took = time.monotonic() - t0
        print(f"enrollment: {len(enrolled)} agents in {took:.1f} s ({len(enrolled) / took:.0f}/s)")
        log = RequestLog()
        agents = [
            SimAgent(i, cfg, creds, log, stop, args) for i, (cfg, creds) in enumerate(enrolled)
        ]
        t0 = time.monotonic()
        for agent in agents:
            agent.start()
        print(
            f"started {len(agents)} agents ({threading.active_count()} threads) in "
            f"{time.monotonic() - t0:.1f} s"
        )
        # every agent has sent its first POST (its groups are known to the server from then)
        deadline = time.monotonic() + args.interval + 30
        while any(a.sent == 0 for a in agents) and time.monotonic() < deadline:
            time.sleep(0.1)  # polling interval of a deadline-bound wait
        s = steady_state(server, agents, log, args.warmup)
        print(
            f"steady state ({s['seconds']:.0f} s): {s['events_per_s']:.0f} events/s delivered, "
            f"{s['requests_per_s']:.0f} requests/s ({s['posts_per_s']:.0f} POST/s, "
            f"{s['post_errors']} failed); command to all {s['commands_queued']} agents: "
            f"{s['commands_received']} received, p50 {_fmt(s['fanout_p50'])}, "
            f"max {_fmt(s['fanout_max'])}"
        )
        print(f"open files during the steady state: {s['fds']}")
        results = [outage(server, agents, log, args, "jitter (the agent's back-off)")]
        print_outage(results[-1], s["requests_per_s"])
        if args.compare:
            for agent in agents:
                agent.backoff._rng = lambda: 1.0
            commander.poller.random = NoJitter  # type: ignore[assignment]
            time.sleep(max(0.0, args.hold))  # let every loop settle back into its rhythm
            results.append(outage(server, agents, log, args, "no jitter (full ceiling)"))
            print_outage(results[-1], s["requests_per_s"])
        sent = sum(a.sent for a in agents)
        counted = server.count_events()
        print(
            f"\nevents: {sent} acknowledged to the agents, {counted} stored by the server "
            f"({counted - sent} stored but not acknowledged: answers lost to the stops, which "
            "a real forwarder sends again)"
        )
        print(f"total run time {time.monotonic() - started:.0f} s")
        return 0
    finally:
        stop.set()
        for agent in agents:
            agent.backoff.wake()  # a waiter in back-off sleeps until its retry, not a tick
        server.stop()  # cuts the held long-polls, so the poller threads end
        deadline = time.monotonic() + 15
        for agent in agents:
            agent.thread.join(max(0.0, deadline - time.monotonic()))
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
