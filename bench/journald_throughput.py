"""logcollector journal throughput: journal entries per second into the forwarder.

    python -m bench.journald_throughput [--entries 200000] [--runs 3]

Journal files are written with systemd-journal-remote from the journal export format
(syslog-like messages of bench/events.py, with a unit, an identifier, a pid and a host).
Each run starts, as separate processes, the bench HTTP sink (bench/sink.py), the real
forwarder (``agentbus forwarder``) pointed at it, and the logcollector
(``agentbus logcollector``, ``journald = "on"`` on a journal directory holding one entry).
Once that entry is committed, a pre-written journal file of ``--entries`` later entries is
renamed into the directory (journalctl follows new files), and the clock runs until the
logcollector reports every entry **committed by the forwarder** (its ``journal_entries``
counter): that is the figure. The time until the sink had every entry is printed too.

Also measured, for the choice of reader: journalctl alone (the child the logcollector
runs, its JSON parsed as the logcollector does), python-systemd reading the same files
(``/usr/bin/python3`` with Debian's ``python3-systemd``, where installed). Medians of
runs.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from bench.events import syslog_lines
from bench.logcollector_throughput import start_logcollector
from bench.machine import describe
from bench.sink import Sink
from bus.errors import BusError
from collectors.logcollector import journald
from collectors.logcollector.settings import LogcollectorSettings
from core.config import Config
from tests.collectors.journal_files import JOURNAL_REMOTE, JournalWriter
from tests.fixtures.commander import status
from tests.fixtures.common import wait_for

SYSTEM_PYTHON = "/usr/bin/python3"


def _entries(config: Config) -> int:
    try:
        return int(status(config, "logcollector").get("journal_entries", 0))
    except BusError:
        return 0


def write_journal(writer: JournalWriter, n: int) -> None:
    """``n`` entries, in pieces (one export stream each) to bound memory."""
    lines = [line.decode().rstrip("\n") for line in syslog_lines(n)]
    step = 50_000
    for start in range(0, n, step):
        writer.write(
            {
                "MESSAGE": line,
                "PRIORITY": "6",
                "SYSLOG_IDENTIFIER": "sshd",
                "_SYSTEMD_UNIT": "ssh.service",
                "_PID": str(1000 + i % 3000),
                "_COMM": "sshd",
                "_HOSTNAME": "bench-host",
                "_UID": "0",
                "_TRANSPORT": "syslog",
            }
            for i, line in enumerate(lines[start : start + step], start)
        )


def one_run(entries: int) -> dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix="ab-jb-", dir="/tmp"))
    journal_dir, staged = base / "journal", base / "staged"
    writer = JournalWriter(journal_dir)
    writer.messages(["the first entry"])
    # the same writer, moved: the burst's timestamps come after the first entry's
    writer.directory = staged
    staged.mkdir()
    write_journal(writer, entries)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, base, ignore_errors=True)
        sink = Sink().start()
        stack.callback(sink.stop)
        config, _collector = start_logcollector(
            stack,
            base,
            sink,
            {
                "journald": "on",
                "journald_directory": str(journal_dir),
                "syslog_paths": [],
                "read_from": "start",
                "poll_interval": "100ms",
            },
        )
        wait_for(lambda: _entries(config) >= 1, 60)
        sink.wait_events(1, timeout=60)

        start = time.monotonic()
        # journal-remote archives its file itself past a size: move every file it wrote
        for i, part in enumerate(sorted(staged.iterdir(), key=lambda p: p.stat().st_mtime)):
            part.rename(journal_dir / f"burst{i}@{part.name}")
        wait_for(lambda: _entries(config) >= entries + 1, 900)
        committed = time.monotonic() - start
        sink.wait_events(entries + 1, timeout=900)
        delivered = time.monotonic() - start
    return {
        "committed_s": committed,
        "per_s": entries / committed,
        "end_to_end_per_s": entries / delivered,
    }


def _cpu() -> float:
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def readers(entries: int, runs: int) -> None:
    """journalctl (as the logcollector runs it) against python-systemd, same files."""
    base = Path(tempfile.mkdtemp(prefix="ab-jr-", dir="/tmp"))
    try:
        writer = JournalWriter(base / "journal")
        write_journal(writer, entries)
        settings = LogcollectorSettings(
            journald="on", journald_directory=str(writer.directory), journald_priority="debug"
        )
        argv = journald.journalctl_argv("journalctl", settings, None, from_end=False)
        argv.remove("--follow")
        rates, cpus = [], []
        for _ in range(runs):
            cpu0, t0 = _cpu(), time.monotonic()
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
            assert proc.stdout is not None
            n = sum(1 for line in proc.stdout if orjson.loads(line)["MESSAGE"])
            proc.wait()
            took = time.monotonic() - t0
            assert n == entries, n
            rates.append(n / took)
            cpus.append((_cpu() - cpu0) / n * 1e6)
        print(
            f"journalctl -o json (child + parsing): median {statistics.median(rates):,.0f} "
            f"entries/s, {statistics.median(cpus):.0f} µs CPU per entry (both processes)"
        )
        script = (
            "import sys,time,resource\nfrom systemd import journal\n"
            "t=time.monotonic();j=journal.Reader(path=sys.argv[1]);n=0\n"
            "for e in j:\n    n+=bool(e['MESSAGE']);c=e['__CURSOR']\n"
            "r=resource.getrusage(resource.RUSAGE_SELF)\n"
            "print(n,time.monotonic()-t,r.ru_utime+r.ru_stime)"
        )
        probe = subprocess.run(
            [SYSTEM_PYTHON, "-c", "import systemd.journal"], capture_output=True, check=False
        )
        if probe.returncode != 0:
            print("python-systemd: not installed (Debian package python3-systemd); skipped")
            return
        rates, cpus = [], []
        for _ in range(runs):
            out = subprocess.run(
                [SYSTEM_PYTHON, "-c", script, str(writer.directory)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            n, took, cpu = int(out[0]), float(out[1]), float(out[2])
            assert n == entries, n
            rates.append(n / took)
            cpus.append(cpu / n * 1e6)
        print(
            f"python-systemd Reader (same fields, cursor read): median "
            f"{statistics.median(rates):,.0f} entries/s, {statistics.median(cpus):.0f} µs CPU "
            "per entry"
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    if JOURNAL_REMOTE is None or shutil.which("journalctl") is None:
        print("needs systemd-journal-remote (Debian package systemd-journal-remote) and journalctl")
        return 1
    print(describe())
    print(f"journal → logcollector → forwarder: {args.entries} entries, {args.runs} runs")
    results = []
    for i in range(args.runs):
        r = one_run(args.entries)
        results.append(r)
        print(
            f"  run {i + 1}: {r['per_s']:,.0f} entries/s committed by the forwarder "
            f"({r['committed_s']:.2f} s), {r['end_to_end_per_s']:,.0f} entries/s at the sink"
        )
    med = statistics.median(r["per_s"] for r in results)
    e2e = statistics.median(r["end_to_end_per_s"] for r in results)
    print(f"median: {med:,.0f} entries/s into the forwarder; {e2e:,.0f} entries/s end to end")
    readers(args.entries, args.runs)
    print(describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
