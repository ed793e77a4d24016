"""The ``hardware`` collector: CPU (/proc/cpuinfo, psutil), memory, and the board's
serial number (/sys/class/dmi/id).

Free and used memory, CPU usage and the CPU clock move between scans;
:func:`stable_hardware` leaves them out of the comparison.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import psutil

from collectors.inventory.host import _compact, _read, cpu_usage
from collectors.state import Item


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


def _dmi(name: str) -> str:
    return _read(Path("/sys/class/dmi/id", name))


def scan_hardware() -> dict[str, Item]:
    mem = psutil.virtual_memory()
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError):
        freq = None
    cpu: dict[str, Any] = {"name": _cpu_name(), "cores": psutil.cpu_count(logical=True) or 0}
    if freq and (freq.max or freq.current):
        cpu["speed"] = int(freq.max or freq.current)  # MHz
    cpu["usage"] = cpu_usage()
    data: dict[str, Any] = {
        "host": {
            "cpu": _compact(cpu),
            "memory": {
                "total": mem.total,
                "free": mem.available,
                "used": {"percentage": round(mem.percent)},
            },
        }
    }
    serial = _dmi("board_serial") or _dmi("product_serial")
    if serial:
        data["observer"] = {"serial_number": serial}
    return {"hardware": Item(data)}


def stable_hardware(data: dict[str, Any]) -> dict[str, Any]:
    """The hardware document without what moves between scans: free and used memory, CPU
    usage, and the CPU clock (the current frequency when the maximum is unknown, which
    scaling changes)."""
    host = data["host"]
    memory = {k: v for k, v in host["memory"].items() if k == "total"}
    cpu = {k: v for k, v in host["cpu"].items() if k not in ("speed", "usage")}
    return {**data, "host": {**host, "memory": memory, "cpu": cpu}}
