"""Whole-agent footprint, idle: PSS, RSS, CPU and wake-ups of every process of `agentbus run`.

    python -m bench.agent_footprint [--idle 60] [--plain-install] [--start-timeout 600]

The way a new user runs it: a reference server (``agentbus server``, its own default
long-poll hold, so the commander's poll stays open through the window), an agent enrolled
with it, then ``agentbus run`` with the packaged defaults (etc/agentbus.toml) except
``data_dir``, ``run_dir`` and ``server_url``: every built-in collector enabled, logcollector
on a temporary log file, fim on a small temporary directory (so its first scan is short),
inventory as shipped. Once every service answers ``agentbus status --json`` (exit 0), the
first inventory and fim scans are done (``services.<name>.counters.scans`` ≥ 1), the
forwarder's queue is empty and a few settling seconds have passed, the idle window starts.

Per process (the supervisor and its children, recursively, found with psutil from the
supervisor's pid), over the window:

- PSS and RSS at the end of the window, from ``/proc/<pid>/smaps_rollup`` (the PSS column
  adds up to the agent's share of memory; the RSS column double-counts shared pages);
- CPU % of one core: (user + system) CPU time delta / window;
- wake-ups/s: voluntary + involuntary context switches delta / window, summed over every
  thread (``/proc/<pid>/task/*/status``; psutil's ``num_ctx_switches`` reads the main
  thread's line only, and most wake-ups of this agent happen in other threads: ZMQ I/O
  threads, timers). Threads that exit during the window take their count with them.

``--plain-install`` hides ``cryptography`` from the agent's processes (a ``sitecustomize``
on ``PYTHONPATH``, inherited by the children): a ``pip install agentbus`` without the
[server] extra does not have it, but the dev venv does, and pyjwt imports it when present
(~10 MB RSS per process that imports pyjwt).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.machine import describe
from core.config import Config, load_config
from refserver.options import DEFAULT_COMMAND_HOLD
from tests.fixtures.agent import enroll_with
from tests.fixtures.refserver import REPO, RefServer

FACTS = {"hostname": "bench", "architecture": "x86_64", "ip": ["192.0.2.1"],
         "os": {"name": "Debian GNU/Linux", "type": "Linux", "version": "12"}}  # fmt: skip
#: the targets a later piece of work aims at (the whole agent, idle)
TARGET_PSS_MB = 60.0
TARGET_CPU_PERCENT = 0.2
#: files in the fim directory (small: the first scan is short)
FIM_FILES = 50
PLAIN_INSTALL = "import sys\nsys.modules['cryptography'] = None\n"


@dataclass
class Sample:
    cpu: float  # user + system seconds
    switches: dict[int, int]  # per thread id: voluntary + involuntary context switches


def write_agent_config(tmp: Path, server_url: str) -> Path:
    """The packaged defaults but for the dirs, the server and the two collectors' paths."""
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
        "\n[collectors.logcollector]\n"
        f"paths = [{json.dumps(str(log_file))}]\n"
        "\n[collectors.fim]\n"
        f"paths = [{json.dumps(str(fim_dir))}]\n"
    )
    return path


def agent_env(tmp: Path, plain_install: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")}
    if plain_install:
        site = tmp / "plain-install"
        site.mkdir()
        (site / "sitecustomize.py").write_text(PLAIN_INSTALL)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return env


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


def scans(report: dict[str, Any], name: str) -> int:
    value = report["services"].get(name, {}).get("counters", {}).get("scans", 0)
    if isinstance(value, dict):  # labelled: the total
        return int(sum(value.values()))
    return int(value or 0)


def wait_ready(
    proc: subprocess.Popen[bytes],
    config_file: Path,
    env: dict[str, str],
    timeout: float,
    log: Path,
) -> dict[str, Any]:
    """Every service up, the first inventory and fim scans done, the forwarder's queue empty."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"agentbus run exited with {proc.returncode}:\n{log.read_text()}")
        code, report = agentbus_status(config_file, env)
        if report is not None:
            fwd = report["services"].get("forwarder", {}).get("counters", {})
            queued = int(fwd.get("queue_events") or 0)
            inv, fim = scans(report, "inventory"), scans(report, "fim")
            last = f"status exit {code}, down {report['summary']['down']}, scans inventory {inv} fim {fim}, forwarder queue {queued}"
            if code == 0 and inv >= 1 and fim >= 1 and queued == 0:
                print(f"ready after {time.monotonic() - started:.1f} s ({last})", flush=True)
                return report
        time.sleep(1.0)  # polling interval of a deadline-bound wait
    raise RuntimeError(f"agent not ready in {timeout:.0f} s: {last}\n{log.read_text()[-4000:]}")


def memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) in kB from /proc/<pid>/smaps_rollup (psutil's memory_full_info as fallback)."""
    try:
        fields = {}
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Pss", "Rss"):
                    fields[key] = int(rest.split()[0])
        return fields["Pss"], fields["Rss"]
    except (OSError, KeyError):
        info = psutil.Process(pid).memory_full_info()
        return int(info.pss) // 1024, int(info.rss) // 1024


def thread_switches(pid: int) -> dict[int, int]:
    """Voluntary + involuntary context switches of every thread of ``pid``."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status", encoding="ascii") as f:
                out[int(tid)] = sum(int(line.split()[1]) for line in f if "ctxt_switches:" in line)
        except OSError:
            continue  # the thread exited
    return out


def sample(proc: psutil.Process) -> Sample:
    t = proc.cpu_times()
    return Sample(float(t.user + t.system), thread_switches(proc.pid))


def names_of(sup: psutil.Process, report: dict[str, Any]) -> dict[int, str]:
    names = {sup.pid: "agent (supervisor)"}
    children = report["services"]["agent"]["counters"].get("children", {})
    for name, child in children.items():
        if child.get("pid"):
            names[int(child["pid"])] = name
    return names


def label(proc: psutil.Process, names: dict[int, str]) -> str:
    if proc.pid in names:
        return names[proc.pid]
    try:
        return " ".join(proc.cmdline()[:3]) or proc.name()
    except psutil.Error:
        return "?"


def measure(sup: psutil.Process, report: dict[str, Any], idle: float) -> list[dict[str, Any]]:
    procs = [sup, *sup.children(recursive=True)]
    names = names_of(sup, report)
    before = {p.pid: sample(p) for p in procs}
    t0 = time.monotonic()
    time.sleep(idle)  # the idle window itself
    window = time.monotonic() - t0
    rows = []
    for p in procs:
        try:
            after = sample(p)
            pss, rss = memory_kb(p.pid)
            threads = p.num_threads()
        except psutil.Error:
            print(f"{label(p, names)} (pid {p.pid}) exited during the window", flush=True)
            continue
        b = before[p.pid]
        switches = sum(n - b.switches.get(tid, 0) for tid, n in after.switches.items())
        rows.append(
            {
                "name": label(p, names),
                "pid": p.pid,
                "pss_mb": pss / 1024,
                "rss_mb": rss / 1024,
                "cpu_pct": (after.cpu - b.cpu) / window * 100,
                "wakeups": switches / window,
                "threads": threads,
            }
        )
    late = {c.pid for c in sup.children(recursive=True)} - {p.pid for p in procs}
    if late:
        print(f"processes started during the window (not measured): {sorted(late)}")
    return rows


def table(rows: list[dict[str, Any]], idle: float) -> str:
    head = f"{'process':<20} {'pid':>7} {'PSS MB':>7} {'RSS MB':>7} {'CPU %':>6} {'wake-ups/s':>10} {'threads':>7}"
    lines = [f"idle window {idle:.0f} s", head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['name']:<20} {r['pid']:>7} {r['pss_mb']:>7.1f} {r['rss_mb']:>7.1f} "
            f"{r['cpu_pct']:>6.2f} {r['wakeups']:>10.1f} {r['threads']:>7}"
        )
    lines.append("-" * len(head))
    total = {k: sum(r[k] for r in rows) for k in ("pss_mb", "rss_mb", "cpu_pct", "wakeups")}
    lines.append(
        f"{'whole agent':<20} {len(rows):>7} {total['pss_mb']:>7.1f} {total['rss_mb']:>7.1f} "
        f"{total['cpu_pct']:>6.2f} {total['wakeups']:>10.1f} "
        f"{sum(r['threads'] for r in rows):>7}"
    )
    lines.append(
        f"target (whole agent, idle): PSS <= {TARGET_PSS_MB:.0f} MB, CPU <= "
        f"{TARGET_CPU_PERCENT} % of one core -> PSS {total['pss_mb'] / TARGET_PSS_MB:.1f}x, "
        f"CPU {total['cpu_pct'] / TARGET_CPU_PERCENT:.1f}x the target "
        "(RSS total double-counts shared pages; processes column = count)"
    )
    return "\n".join(lines)


def stop_agent(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM the supervisor, wait; any process of the agent still alive is killed."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        family = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout)
        print(f"agentbus run stopped (exit {code})")
    except subprocess.TimeoutExpired:
        print("agentbus run did not stop in time: killed")
        proc.kill()
        proc.wait()
    _, alive = psutil.wait_procs(family, timeout=10)
    for p in alive:
        print(f"child {p.pid} outlived the supervisor: killed")
        try:
            p.kill()
        except psutil.Error:
            pass


def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ab-fp-", dir="/tmp"))  # short: ipc paths
    server = RefServer(tmp / "server", command_hold=DEFAULT_COMMAND_HOLD)
    proc: subprocess.Popen[bytes] | None = None
    try:
        server.start()
        config_file = write_agent_config(tmp, server.url)
        config: Config = load_config(config_file, environ={})
        enroll_with(server, config, "bench", facts=FACTS, uuid_version=4)
        env = agent_env(tmp, args.plain_install)
        log = tmp / "agent.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "agent.main", "run", "--config", str(config_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
            )
        install = "plain install (no cryptography)" if args.plain_install else "dev venv"
        print(f"agentbus run pid {proc.pid} ({install}), config {config_file}", flush=True)
        report = wait_ready(proc, config_file, env, args.start_timeout, log)
        time.sleep(args.settle)  # let the first scans' delivery and start-up work finish
        rows = measure(psutil.Process(proc.pid), report, args.idle)
        print(table(rows, args.idle))
        code, _ = agentbus_status(config_file, env)
        print(f"agentbus status after the window: exit {code}")
    finally:
        if proc is not None:
            stop_agent(proc)
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=float, default=60.0, help="idle window, seconds")
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds between ready and the window"
    )
    parser.add_argument(
        "--start-timeout", type=float, default=600.0, help="seconds to wait for readiness"
    )
    parser.add_argument(
        "--plain-install", action="store_true", help="hide cryptography from the agent"
    )
    args = parser.parse_args(argv)
    print(describe(), flush=True)
    run(args)
    print(describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
