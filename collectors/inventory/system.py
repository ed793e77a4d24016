"""The ``system`` collector: what the host is (name, OS from /etc/os-release, kernel,
machine and boot ids, addresses) and its uptime, CPU usage and disk and network totals.

Those figures move between scans; :func:`stable_system` leaves them out of the comparison.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from typing import Any

import psutil

from collectors.inventory.host import (
    _compact,
    _host_addresses,
    _io_figures,
    _read,
    cpu_usage,
    os_release,
)
from collectors.state import Item

#: ``host`` fields of the system document that move between scans
SYSTEM_VOLATILE = ("uptime", "cpu", "disk", "network")


def scan_system() -> dict[str, Item]:
    rel = os_release()
    uname = platform.uname()
    name = rel.get("NAME") or uname.system
    version = rel.get("VERSION_ID", "")
    full = rel.get("PRETTY_NAME") or f"{name} {version}".strip()
    codename = rel.get("VERSION_CODENAME", "")
    if codename and codename not in full:
        full = f"{full} ({codename})"  # the codename has no field of its own
    like = (rel.get("ID_LIKE") or rel.get("ID") or "").split()
    hostname = socket.gethostname()
    domain = _read("/proc/sys/kernel/domainname")
    ips, macs = _host_addresses()
    try:
        pid_ns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pid_ns = ""
    host: dict[str, Any] = _compact(
        {
            "hostname": hostname,
            "name": hostname.split(".")[0],
            "domain": "" if domain == "(none)" else domain,
            "architecture": uname.machine,
            "id": _read("/etc/machine-id"),
            "pid_ns_ino": pid_ns,
            "uptime": max(0, int(time.time() - psutil.boot_time())),
        }
    )
    boot_id = _read("/proc/sys/kernel/random/boot_id")
    if boot_id:
        host["boot"] = {"id": boot_id}
    host["os"] = _compact(
        {
            "name": name,
            "version": version,
            "full": full,
            "platform": rel.get("ID") or uname.system.lower(),
            "family": like[0] if like else "",
            "type": uname.system.lower(),
            "kernel": uname.release,
        }
    )
    if ips:
        host["ip"] = ips
    if macs:
        host["mac"] = macs
    host["cpu"] = {"usage": cpu_usage()}
    host.update(_io_figures())
    return {"system": Item({"host": host})}


def stable_system(data: dict[str, Any]) -> dict[str, Any]:
    """The system document without uptime and the load and traffic figures."""
    host = {k: v for k, v in data["host"].items() if k not in SYSTEM_VOLATILE}
    return {**data, "host": host}
