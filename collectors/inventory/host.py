"""Host readers the inventory collectors share: small /proc and /sys files,
/etc/os-release, the host's addresses and its load and traffic figures (psutil).

A value the host does not offer is left out rather than sent empty (:func:`_compact`).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import time
from pathlib import Path
from typing import Any

import psutil


def _read(path: str | Path) -> str:
    """A small /proc or /sys file, stripped; "" when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` without empty strings and Nones: absent says "unknown" better than ""."""
    return {k: v for k, v in values.items() if v is not None and v != ""}


def _ip(address: str) -> str:
    """An address as the ``ip`` type takes it: without an IPv6 ``%zone``."""
    return address.split("%", 1)[0]


def os_release(path: str = "/etc/os-release") -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return values
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


def _hex_ip(text: str) -> str:
    """An address as /proc/net prints it: 32-bit words in host byte order, in hex."""
    raw = b"".join(
        int(text[i : i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(text), 8)
    )
    return str(ipaddress.ip_address(raw))


# -- host figures (volatile: kept out of every comparison) ----------------------------
#: the last CPU sample: (monotonic time, busy seconds, total seconds, usage it gave)
_last_cpu: tuple[float, float, float, float] | None = None
#: samples closer than this reuse the last usage (system and hardware scan back to back)
CPU_SAMPLE_MIN = 1.0


def cpu_usage() -> float:
    """Share of CPU time not idle (0–1) since the previous sample; since boot at the first."""
    global _last_cpu
    now = time.monotonic()
    if _last_cpu is not None and now - _last_cpu[0] < CPU_SAMPLE_MIN:
        return _last_cpu[3]
    times = psutil.cpu_times()
    total = sum(times)
    busy = total - times.idle - getattr(times, "iowait", 0.0)
    _, busy_before, total_before, _ = _last_cpu or (0.0, 0.0, 0.0, 0.0)
    elapsed = total - total_before
    usage = (busy - busy_before) / elapsed if elapsed > 0 else 0.0
    usage = round(min(1.0, max(0.0, usage)), 4)
    _last_cpu = (now, busy, total, usage)
    return usage


def _host_addresses() -> tuple[list[str], list[str]]:
    """The host's IP and MAC addresses, loopback left out, sorted (a stable order)."""
    ips: set[str] = set()
    macs: set[str] = set()
    for entries in psutil.net_if_addrs().values():
        for a in entries:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                ip = _ip(a.address)
                try:
                    if ipaddress.ip_address(ip).is_loopback:
                        continue
                except ValueError:
                    continue
                ips.add(ip)
            elif a.family == psutil.AF_LINK and a.address and a.address != "00:00:00:00:00:00":
                macs.add(a.address)
    return sorted(ips), sorted(macs)


def _io_figures() -> dict[str, Any]:
    """Disk and network totals since boot (``host.disk``, ``host.network``)."""
    out: dict[str, Any] = {}
    try:
        disk = psutil.disk_io_counters()
    except (OSError, RuntimeError):
        disk = None
    if disk is not None:
        out["disk"] = {"read": {"bytes": disk.read_bytes}, "write": {"bytes": disk.write_bytes}}
    net = psutil.net_io_counters()
    if net is not None:
        out["network"] = {
            "egress": {"bytes": net.bytes_sent, "packets": net.packets_sent},
            "ingress": {"bytes": net.bytes_recv, "packets": net.packets_recv},
        }
    return out
