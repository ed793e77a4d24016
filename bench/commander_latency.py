"""Command fan-out latency: server release → executor receipt (target p99 ≤ 100 ms).

    python -m bench.commander_latency [--commands 200] [--runs 3] [--gap-ms 20] [--server-nodelay]

Sets up the whole command path for real: the reference server (``agentbus server``, its
long-poll held 60 s), an agent enrolled with it, ``agentbus forwarder`` and ``agentbus
commander`` as their own processes, and an SDK executor (``bus.Executor``) in this process.
Commands are queued one after another through the server's admin API; each is timed from
the moment the server handed it to the long-poll (its ``sent_at``, stored by the server)
to the moment the executor's handler started (``time.time()`` on the same host). That
covers the HTTP answer, JSON parsing, the fsynced write to commands.db, the hand-over to
the fan-out thread, the XPUB publication and the executor's receipt. Figures: p50, p90,
p99, max per run, and the median of runs. Also printed: queue → receipt (admin call
included) and receipt → result stored on the server (through the forwarder).

``--server-nodelay``: the reference server as shipped leaves Nagle on for its connections
(see :class:`NoDelayRefServer`), which adds ~40 ms to every long-poll answer after the first
on a kept-alive connection; this flag measures the agent without that server artifact.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bench.machine import describe
from bus import Executor
from core.config import config_from_dict
from core.service import endpoints_from_config
from tests.fixtures.agent import enroll_with
from tests.fixtures.commander import Proc, status, wait_status
from tests.fixtures.common import wait_for, write_config
from tests.fixtures.refserver import RefServer

FACTS = {"hostname": "bench", "architecture": "x86_64", "ip": ["192.0.2.1"],
         "os": {"name": "Debian GNU/Linux", "type": "Linux", "version": "12"}}  # fmt: skip


class NoDelayRefServer(RefServer):
    """The reference server with TCP_NODELAY on its connections.

    refserver/server.py binds its listening socket as ``socket(family, SOCK_STREAM)``
    (proto 0); asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, so
    every answer after the first on a kept-alive connection meets Nagle + delayed ACK and
    arrives ~40 ms late. This wrapper re-creates the bound socket with IPPROTO_TCP.
    """

    def command_line(self) -> list[str]:
        cmd = super().command_line()
        i = cmd.index("agent.main")
        code = (
            "import socket, sys, refserver.server as s\n"
            "bind = s._bind\n"
            "def _bind(host, port):\n"
            "    sock = bind(host, port)\n"
            "    return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, "
            "fileno=sock.detach())\n"
            "s._bind = _bind\n"
            "from agent.main import main\n"
            "sys.exit(main(sys.argv[1:]))\n"
        )
        return [cmd[0], "-c", code, *cmd[i + 1 :]]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=200, help="commands per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--gap-ms", type=float, default=20.0, help="pause between commands")
    parser.add_argument(
        "--server-nodelay",
        action="store_true",
        help="give the reference server's listening socket IPPROTO_TCP, so asyncio sets "
        "TCP_NODELAY on its connections (see the module docstring)",
    )
    parser.add_argument("--verbose", action="store_true", help="timeline of a few commands")
    args = parser.parse_args()
    print(describe())

    tmp = Path(tempfile.mkdtemp(prefix="ab-cl-", dir="/tmp"))
    server_class = NoDelayRefServer if args.server_nodelay else RefServer
    server = server_class(tmp / "server", command_hold=60.0).start()
    raw = {
        "agent": {"data_dir": str(tmp / "data"), "run_dir": str(tmp / "run"),
                  "server_url": server.url},
        "log": {"level": "INFO", "file": str(tmp / "agent.log")},
        "commander": {"hello_grace": "1s"},
        "forwarder": {"batch_interval": "50ms"},
    }  # fmt: skip
    config = config_from_dict(raw)
    cfg_file = write_config(config, tmp / "agent.toml")
    # the server takes v4 ids only: no v7 try first
    enroll_with(server, config, "bench", facts=FACTS, uuid_version=4)
    agent_id = server.agents()[0]["id"]
    eps = endpoints_from_config(config)
    procs = [
        Proc(["-m", "agent.main", svc, "--config", str(cfg_file)], tmp / f"{svc}.out")
        for svc in ("forwarder", "commander")
    ]
    receipts: dict[str, float] = {}
    got = threading.Condition()

    def handler(cmd):  # type: ignore[no-untyped-def]
        now = time.time()
        with got:
            receipts[cmd.id] = now
            got.notify_all()
        return 0, "ok"

    executor = Executor(["bench"], name="bench", handlers={"ping": handler},
                        commands_endpoint=eps.commands, results_endpoint=eps.results)  # fmt: skip
    try:
        wait_status(config, "commander", 30)
        wait_status(config, "forwarder", 30)
        executor.start()
        wait_for(lambda: status(config).get("live_executors"), 30)  # the executor's hello
        # Warm-up: token, connections, first subscription.
        doc = server.queue_command(agent_id, name="bench.ping")
        with got:
            got.wait_for(lambda: doc in receipts, 30)

        runs = []
        for run in range(args.runs):
            queued: dict[str, float] = {}
            for _ in range(args.commands):
                t0 = time.time()
                doc = server.queue_command(agent_id, name="bench.ping", timeout=60)
                queued[doc] = t0
                with got:
                    if not got.wait_for(lambda d=doc: d in receipts, 30):  # type: ignore[misc]
                        raise RuntimeError(f"command {doc} never reached the executor")
                time.sleep(args.gap_ms / 1000)  # pacing between commands, not a wait
            wait_for(  # every result on the server
                lambda q=queued: sum(1 for c in server.commands() if c["document_id"] in q  # type: ignore[misc]
                                     and c["status"] == "done") == len(q),
                60,
            )  # fmt: skip
            rows = {c["document_id"]: c for c in server.commands() if c["document_id"] in queued}
            stored = {r["document_id"]: r["received"] for r in server.command_results()}
            lat = [(receipts[d] - rows[d]["sent_at"]) * 1000 for d in queued]
            e2e = [(receipts[d] - queued[d]) * 1000 for d in queued]
            back = [(stored[d] - receipts[d]) * 1000 for d in queued if d in stored]
            runs.append((lat, e2e, back))
            if args.verbose:
                for d in list(queued)[-3:]:
                    print(f"  {d}: queued {queued[d]:.3f} sent {rows[d]['sent_at']:.3f} "
                          f"receipt {receipts[d]:.3f}")  # fmt: skip
            print(
                f"run {run + 1}: release→receipt p50 {pct(lat, 50):.1f} ms, p90 {pct(lat, 90):.1f}, "
                f"p99 {pct(lat, 99):.1f}, max {max(lat):.1f} | queue→receipt p50 "
                f"{pct(e2e, 50):.1f} p99 {pct(e2e, 99):.1f} | receipt→result stored p50 "
                f"{pct(back, 50):.1f} p99 {pct(back, 99):.1f} ({len(lat)} commands)"
            )
        med = statistics.median
        print(
            f"median of {args.runs} runs: release→receipt p50 "
            f"{med(pct(r[0], 50) for r in runs):.1f} ms, p99 {med(pct(r[0], 99) for r in runs):.1f} ms; "
            f"queue→receipt p99 {med(pct(r[1], 99) for r in runs):.1f} ms; "
            f"receipt→result stored p50 {med(pct(r[2], 50) for r in runs):.1f} ms"
        )
    finally:
        executor.stop()
        for p in procs:
            p.stop()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
