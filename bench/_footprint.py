"""The measuring parts of the footprint benchmark (bench/footprint.py), shared with the
syslog-ng peer (:func:`bench.peer_syslog_ng.run_footprint`); not a benchmark itself.

What a process costs, read from /proc:

- :func:`memory_kb` — PSS, USS (``Private_Clean + Private_Dirty``) and RSS from
  ``/proc/<pid>/smaps_rollup``. PSS adds up across processes to their share of memory;
  RSS counts a shared page once per process that maps it.
- :func:`thread_switches` — voluntary + involuntary context switches of **every thread**
  (``/proc/<pid>/task/*/status``: psutil's ``num_ctx_switches`` reads the main thread's
  line only, and most wake-ups of a Python service happen in other threads: ZMQ I/O
  threads, timers).
- :class:`Window` — per process of a tree (a root and its descendants), over a window:
  CPU % of one core ((user + system) delta, the CPU of reaped children included),
  wake-ups/s, and at the window's end PSS/USS/RSS, threads and open files
  (``/proc/<pid>/fd``). A process that starts during the window counts from zero; one
  that ends takes its figures with it (listed in ``.gone``).
- :class:`PssSampler` — the tree's total PSS every ``interval`` in a thread: its peak.
- :func:`process_name` — ``agent (supervisor)`` or the service's name from an agentbus
  command line (``python -m agent.main <service> ...``, ``agentbus <service> ...``).

The phases, whatever the process measured and however it is fed:

- :func:`idle_phase` — a window of doing nothing.
- :func:`load_phase` — a steady rate (``runner.paced``) until every event is delivered:
  CPU % of one core and CPU-seconds per 1,000 events (:func:`load_figures`).
- :func:`queued_phase` — a backlog pushed while the destination is down: total PSS at a
  quarter, half and all of it queued (:func:`checkpoints`), then ``later`` seconds after,
  and the sampled peak.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench.runner import paced

Row = dict[str, Any]
#: the figures a row adds up in a total (the rest is per process)
SUMMED = ("pss_mb", "uss_mb", "rss_mb", "cpu_s", "cpu_pct", "wakeups", "threads", "fds")


def memory_kb(pid: int) -> dict[str, int]:
    """``{"pss", "uss", "rss"}`` in kB, from /proc/<pid>/smaps_rollup."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Pss", "Rss", "Private_Clean", "Private_Dirty"):
                fields[key] = int(rest.split()[0])
    return {
        "pss": fields["Pss"],
        "uss": fields["Private_Clean"] + fields["Private_Dirty"],
        "rss": fields["Rss"],
    }


def thread_switches(pid: int) -> dict[int, int]:
    """Voluntary + involuntary context switches of every thread of ``pid``, by thread id."""
    out: dict[int, int] = {}
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


def open_files(pid: int) -> int:
    """Entries of /proc/<pid>/fd: files, sockets, pipes, eventfds, ..."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU of ``proc``, with that of the children it has reaped."""
    t = proc.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def process_name(cmdline: list[str]) -> str:
    """``agent (supervisor)`` for ``agentbus run``, the service for ``agentbus <service>``
    (either ``python -m agent.main <service>`` or the ``agentbus`` script); anything else:
    its program's name (and, for Python, its first two arguments)."""
    for i, arg in enumerate(cmdline[:-1]):
        if arg == "agent.main" or os.path.basename(arg) == "agentbus":
            service = cmdline[i + 1]
            return "agent (supervisor)" if service == "run" else service
    if not cmdline:
        return "?"
    program = os.path.basename(cmdline[0])
    return " ".join([program, *cmdline[1:3]]) if program.startswith("python") else program


def maps_package(pid: int, package: str) -> bool:
    """Whether ``pid`` has a file of the installed ``package`` mapped (its compiled
    extension: an imported ``cryptography`` maps its Rust library)."""
    needle = f"/site-packages/{package}/"
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
        return any(needle in line for line in f)


def tree(root: int) -> list[psutil.Process]:
    """``root`` and every descendant alive now."""
    proc = psutil.Process(root)
    return [proc, *proc.children(recursive=True)]


@dataclass
class Sample:
    name: str
    cpu: float
    switches: dict[int, int]


def _sample(proc: psutil.Process) -> Sample:
    return Sample(process_name(proc.cmdline()), cpu_seconds(proc), thread_switches(proc.pid))


@dataclass
class Window:
    """CPU, wake-ups and (at the end) memory of a process tree over a window of time::

    w = Window(pid).start(); time.sleep(60); rows = w.stop()
    """

    root: int
    started: float = 0.0
    before: dict[int, Sample] = field(default_factory=dict)
    procs: dict[int, psutil.Process] = field(default_factory=dict)
    #: processes of the tree that ended during the window: (pid, name)
    gone: list[tuple[int, str]] = field(default_factory=list)

    def start(self) -> Window:
        self.before, self.procs, self.gone = {}, {}, []
        for p in tree(self.root):
            try:
                self.before[p.pid] = _sample(p)
                self.procs[p.pid] = p
            except psutil.Error:
                continue
        self.started = time.monotonic()
        return self

    def stop(self) -> list[Row]:
        """One row per process alive at the end (a process that started during the window
        counts from zero): ``name pid pss_mb uss_mb rss_mb cpu_s cpu_pct wakeups threads
        fds``, CPU and wake-ups over the window."""
        now = tree(self.root)
        seconds = max(time.monotonic() - self.started, 1e-6)
        rows = []
        for p in now:
            p = self.procs.get(p.pid, p)  # the same psutil handle: no pid reuse confusion
            try:
                after = _sample(p)
                mem = memory_kb(p.pid)
                threads, fds = p.num_threads(), open_files(p.pid)
            except (psutil.Error, OSError):
                continue  # ended right now
            b = self.before.get(p.pid, Sample(after.name, 0.0, {}))
            switches = sum(n - b.switches.get(tid, 0) for tid, n in after.switches.items())
            cpu = after.cpu - b.cpu
            rows.append(
                {
                    "name": after.name,
                    "pid": p.pid,
                    "pss_mb": mem["pss"] / 1024,
                    "uss_mb": mem["uss"] / 1024,
                    "rss_mb": mem["rss"] / 1024,
                    "cpu_s": cpu,
                    "cpu_pct": cpu / seconds * 100,
                    "wakeups": switches / seconds,
                    "threads": threads,
                    "fds": fds,
                    "new": p.pid not in self.before,
                }
            )
        alive = {r["pid"] for r in rows}
        self.gone = [(pid, s.name) for pid, s in self.before.items() if pid not in alive]
        return rows


def total(rows: list[Row]) -> Row:
    """The sums of :data:`SUMMED` over ``rows``, and ``processes`` = how many."""
    out: Row = {k: sum(r[k] for r in rows) for k in SUMMED}
    out["processes"] = len(rows)
    return out


def tree_pss_mb(root: int) -> float:
    """PSS of ``root`` and its descendants now, MB."""
    out = 0
    for p in tree(root):
        try:
            out += memory_kb(p.pid)["pss"]
        except OSError:
            continue  # ended meanwhile
    return out / 1024


class PssSampler:
    """Samples the tree's total PSS every ``interval`` s in a thread; ``.peak`` (MB)."""

    def __init__(self, root: int, interval: float = 0.5) -> None:
        self.root = root
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.peak = max(self.peak, tree_pss_mb(self.root))
            except psutil.Error:
                return

    def __enter__(self) -> PssSampler:
        self.peak = tree_pss_mb(self.root)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------- phases


def checkpoints(n: int) -> list[int]:
    """Where a backlog of ``n`` is looked at: a quarter, half, all of it."""
    return sorted({m for m in (n // 4, n // 2, n) if m > 0})


def load_figures(cpu_s: float, events: int, seconds: float, idle_cpu_pct: float) -> Row:
    """CPU of a load window: % of one core, CPU-seconds per 1,000 events, and the same net
    of the idle rate (what the events cost above doing nothing)."""
    thousands = events / 1000
    return {
        "events": events,
        "seconds": seconds,
        "cpu_pct": cpu_s / seconds * 100,
        "per_1000": cpu_s / thousands,
        "net_per_1000": (cpu_s - idle_cpu_pct / 100 * seconds) / thousands,
    }


def note_changes(window: Window, rows: list[Row]) -> None:
    """Say which processes started or ended during a window."""
    if window.gone:
        print(f"  ended during the window: {window.gone}")
    new = [(r["pid"], r["name"]) for r in rows if r["new"]]
    if new:
        print(f"  started during the window (counted from their start): {new}")


def idle_phase(pid: int, seconds: float) -> Row:
    """``{"rows", "total", "seconds"}`` of the tree of ``pid`` over ``seconds`` of nothing."""
    window = Window(pid).start()
    time.sleep(seconds)  # the idle window itself
    rows = window.stop()
    note_changes(window, rows)
    return {"rows": rows, "total": total(rows), "seconds": seconds}


def load_phase(
    pid: int,
    rate: int,
    seconds: float,
    send: Callable[[int, int, float], object],
    delivered: Callable[[int], int],
    idle_cpu_pct: float,
) -> Row:
    """``send(first, last, now)`` at ``rate`` events/s for ``seconds``, then
    ``delivered(n)`` (blocks until the destination has all ``n``, returns its count): the
    tree's rows over that window, its total, :func:`load_figures`, ``rate``, ``delivered``."""
    n = int(rate * seconds)
    window = Window(pid).start()
    started = time.monotonic()
    paced(n, rate, send)
    got = delivered(n)
    elapsed = time.monotonic() - started
    rows = window.stop()
    note_changes(window, rows)
    tot = total(rows)
    return {
        "rows": rows,
        "total": tot,
        **load_figures(tot["cpu_s"], n, elapsed, idle_cpu_pct),
        "rate": rate,
        "delivered": got,
    }


def queued_phase(
    pid: int,
    n: int,
    push: Callable[[int, int], object],
    queued: Callable[[int], int],
    later: float,
    slice_events: int = 50_000,
) -> Row:
    """``push(first, count)`` ``n`` events in slices while the destination is down; at each
    of :func:`checkpoints` ``queued(mark)`` blocks until ``mark`` are queued (returns how
    many are) and the tree's PSS is read; again ``later`` seconds after the last. Returns
    ``n``, ``points`` [(what, queued, PSS MB)], ``peak_mb``, ``ingest_eps`` and the rows of
    the ``later`` window (per process PSS at its end)."""
    points: list[tuple[str, int, float]] = []
    sent = 0
    with PssSampler(pid) as sampler:
        started = time.monotonic()
        for mark in checkpoints(n):
            while sent < mark:
                count = min(slice_events, mark - sent)
                push(sent, count)
                sent += count
            points.append((f"{mark:,} queued", queued(mark), tree_pss_mb(pid)))
        ingest_s = time.monotonic() - started
        window = Window(pid).start()
        time.sleep(later)
        rows = window.stop()
        points.append((f"{later:.0f} s later", queued(0), total(rows)["pss_mb"]))
    note_changes(window, rows)
    return {
        "n": n,
        "points": points,
        "peak_mb": max(sampler.peak, *(p[2] for p in points)),
        "ingest_eps": n / ingest_s,
        "rows": rows,
        "later": later,
    }
