"""The machine a benchmark ran on, printed next to every figure.

    python -m bench.machine

Load average matters here: the 2 cores are shared with other work, and a figure measured
at load 3 is not the same figure as one measured at load 0.
"""

from __future__ import annotations

import os
import platform


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_mb() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def describe() -> str:
    """One line: CPU model and cores, memory, kernel, Python, load average right now."""
    cores = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    mem = _memory_mb()
    try:
        load = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = "n/a"
    parts = [
        f"cpu: {_cpu_model()} x{cores}" + (f" ({usable} usable)" if usable != cores else ""),
        f"mem: {mem} MB" if mem is not None else "mem: n/a",
        f"kernel: {platform.system()} {platform.release()}",
        f"python: {platform.python_implementation()} {platform.python_version()}",
        f"load: {load}",
    ]
    return "machine: " + " | ".join(parts)


if __name__ == "__main__":
    print(describe())
