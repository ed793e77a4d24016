"""Run every benchmark in turn and print their output (``make bench``).

Which files are benchmarks — the convention for anyone adding one:

- every ``bench/*.py`` is a benchmark script, run as ``python -m bench.<name>`` with no
  arguments from the repository root, in name order;
- except the shared support modules in :data:`SUPPORT` and any file whose name starts
  with ``_`` (name your own helper modules ``_something.py``);
- the sink's own ceiling (``bench.sink ceiling``) runs first, so every report shows the sink
  was not the bottleneck.

A script prints its figures and the machine (``machine.describe()``) and exits 0; a
script that cannot run here (a missing peer) prints why and exits 0 too. Options:
``--list`` shows what would run, ``-k TEXT`` runs only the scripts whose name contains
TEXT, ``--timeout S`` bounds each script (default 1800 s).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from bench.machine import describe

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
#: support modules in bench/ that are not benchmarks themselves
SUPPORT = frozenset({"machine.py", "events.py", "sink.py", "runner.py", "run_all.py"})


def discover(only: str | None = None) -> list[str]:
    """Paths of the benchmark scripts, in name order."""
    names = sorted(
        n
        for n in os.listdir(HERE)
        if n.endswith(".py") and not n.startswith("_") and n not in SUPPORT
    )
    if only:
        names = [n for n in names if only in n]
    return [os.path.join(HERE, n) for n in names]


def module(path: str) -> str:
    """``bench/x.py`` → ``bench.x``, what ``python -m`` runs."""
    return "bench." + os.path.basename(path)[: -len(".py")]


def run(args: list[str], timeout: float) -> int:
    """``python -m bench.<name> ARGS`` with its output going straight to ours; returns its
    exit code."""
    title = " ".join(args)
    print(f"\n===== {title} =====", flush=True)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print(f"----- {title}: TIMED OUT after {timeout:.0f} s", flush=True)
        return 124
    print(f"----- {title}: exit {code}, {time.monotonic() - started:.0f} s", flush=True)
    return code


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="run every benchmark in bench/")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("-k", dest="only", help="only scripts whose name contains this")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per script")
    args = parser.parse_args(argv)
    scripts = discover(args.only)
    if args.list:
        for path in scripts:
            print(f"python -m {module(path)}")
        return 0
    print(describe())
    failed = []
    if not args.only and run(["bench.sink", "ceiling"], args.timeout):
        failed.append("bench.sink ceiling")
    for path in scripts:
        if run([module(path)], args.timeout):
            failed.append(module(path))
    print()
    print(describe())
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    print(f"all {len(scripts) + (0 if args.only else 1)} benchmarks ran")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
