"""What the host has: one function per inventory collector, each → {primary key: Item}.

Data comes from psutil, /proc, /etc/os-release and the package database (dpkg's status
file, else rpm). Field names follow ECS, as the server's inventory indices do. A scanner
that cannot read its source raises; the caller then skips that collector for this scan
(it must not be mistaken for "everything disappeared").
"""

from __future__ import annotations

import platform
import shutil
import socket
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from collectors.state import Item

Scanner = Callable[[], dict[str, Item]]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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


# -- system -------------------------------------------------------------------------
def scan_system() -> dict[str, Item]:
    rel = os_release()
    uname = platform.uname()
    data = {
        "host": {
            "hostname": socket.gethostname(),
            "architecture": uname.machine,
            "boot": {"time": iso(psutil.boot_time())},
            "os": {
                "name": rel.get("NAME", uname.system),
                "version": rel.get("VERSION_ID", ""),
                "full": rel.get("PRETTY_NAME", ""),
                "codename": rel.get("VERSION_CODENAME", ""),
                "platform": rel.get("ID", uname.system.lower()),
                "type": uname.system.lower(),
                "kernel": uname.release,
            },
        }
    }
    return {"system": Item(data)}


# -- hardware -----------------------------------------------------------------------
#: fields left out of the comparison: they change at every scan
HARDWARE_VOLATILE = ("free", "used", "usage")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


def _dmi(name: str) -> str:
    try:
        return Path("/sys/class/dmi/id", name).read_text(errors="replace").strip()
    except OSError:
        return ""


def scan_hardware() -> dict[str, Item]:
    mem = psutil.virtual_memory()
    freq = psutil.cpu_freq()
    data = {
        "host": {
            "cpu": {
                "name": _cpu_name(),
                "cores": psutil.cpu_count(logical=True) or 0,
                "speed": int(freq.max or freq.current) if freq else 0,
            },
            "memory": {
                "total": mem.total,
                "free": mem.available,
                "used": mem.total - mem.available,
                "usage": round(mem.percent / 100, 4),
            },
        },
        "observer": {"serial_number": _dmi("board_serial") or _dmi("product_serial")},
    }
    return {"hardware": Item(data)}


def stable_hardware(data: dict[str, Any]) -> dict[str, Any]:
    """The hardware document without what moves between scans: used memory, and the CPU
    clock (the current frequency when the maximum is unknown, which scaling changes)."""
    host = data["host"]
    memory = {k: v for k, v in host["memory"].items() if k not in HARDWARE_VOLATILE}
    cpu = {k: v for k, v in host["cpu"].items() if k != "speed"}
    return {**data, "host": {**host, "memory": memory, "cpu": cpu}}


# -- packages -----------------------------------------------------------------------
def parse_dpkg_status(text: str) -> dict[str, Item]:
    """Installed packages from the text of dpkg's status file."""
    items: dict[str, Item] = {}
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line[:1] in (" ", "\t"):
                continue  # continuation (long description, conffiles): not needed
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        name = fields.get("Package")
        if not name or not fields.get("Status", "").endswith(" installed"):
            continue
        arch = fields.get("Architecture", "")
        size = fields.get("Installed-Size", "")
        package: dict[str, Any] = {
            "name": name,
            "version": fields.get("Version", ""),
            "architecture": arch,
            "type": "deb",
            "description": fields.get("Description", ""),
            "vendor": fields.get("Maintainer", ""),
            "category": fields.get("Section", ""),
            "priority": fields.get("Priority", ""),
            "source": fields.get("Source", "").split(" ")[0],
            "size": int(size) * 1024 if size.isdigit() else 0,
        }
        # Name and architecture identify a package: an upgrade is an update of it.
        items[f"deb:{name}:{arch}"] = Item({"package": package})
    return items


def scan_rpm() -> dict[str, Item]:
    fmt = "%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{SIZE}\\t%{VENDOR}\\t%{SUMMARY}\\n"
    out = subprocess.run(
        ["rpm", "-qa", "--queryformat", fmt],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    items: dict[str, Item] = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) < 6:
            continue
        name, version, arch, size, vendor, summary = parts[:6]
        package = {
            "name": name,
            "version": version,
            "architecture": arch,
            "type": "rpm",
            "description": summary,
            "vendor": vendor,
            "size": int(size) if size.isdigit() else 0,
        }
        items[f"rpm:{name}:{arch}"] = Item({"package": package})
    return items


def make_package_scanner(dpkg_status: str) -> Scanner:
    def scan_packages() -> dict[str, Item]:
        path = Path(dpkg_status)
        if path.exists():
            return parse_dpkg_status(path.read_text(encoding="utf-8", errors="replace"))
        if shutil.which("rpm"):
            return scan_rpm()
        raise FileNotFoundError(
            f"no package database: {dpkg_status} is absent and rpm is not installed"
        )

    return scan_packages


# -- processes ----------------------------------------------------------------------
_PROC_ATTRS = ["pid", "ppid", "name", "exe", "cmdline", "username", "create_time", "terminal"]


def scan_processes() -> dict[str, Item]:
    """Running processes; only fields that do not change while a process lives.

    CPU, memory and state change all the time and would make every process an update at
    every scan; they are left out. The key is pid + start time, so a reused pid is a new
    document (delete + create), not an update.
    """
    items: dict[str, Item] = {}
    for proc in psutil.process_iter(_PROC_ATTRS):
        info = proc.info
        if info.get("create_time") is None:
            continue
        cmdline = info.get("cmdline") or []
        start = iso(info["create_time"])
        process: dict[str, Any] = {
            "pid": info["pid"],
            "name": info.get("name") or "",
            "parent": {"pid": info.get("ppid") or 0},
            "executable": info.get("exe") or "",
            "command_line": " ".join(cmdline),
            "args": list(cmdline),
            "args_count": len(cmdline),
            "user": {"name": info.get("username") or ""},
            "start": start,
        }
        if info.get("terminal"):
            process["tty"] = {"name": info["terminal"]}
        items[f"{info['pid']}:{int(info['create_time'] * 1000)}"] = Item({"process": process})
    return items


# -- networks -----------------------------------------------------------------------
def scan_networks() -> dict[str, Item]:
    addrs = psutil.net_if_addrs()
    stats = psutil.net_if_stats()
    items: dict[str, Item] = {}
    for name, entries in addrs.items():
        ipv4: list[dict[str, str]] = []
        ipv6: list[dict[str, str]] = []
        mac = ""
        for a in entries:
            if a.family == socket.AF_INET:
                ipv4.append(_addr(a))
            elif a.family == socket.AF_INET6:
                ipv6.append(_addr(a))
            elif a.family == psutil.AF_LINK:
                mac = a.address
        st = stats.get(name)
        interface: dict[str, Any] = {
            "name": name,
            "mtu": st.mtu if st else 0,
            "state": "up" if st and st.isup else "down",
        }
        if st and st.speed:
            interface["speed"] = st.speed
        data = {
            "interface": interface,
            "host": {"mac": mac, "ip": [a["address"] for a in ipv4 + ipv6]},
            "network": {"ipv4": ipv4, "ipv6": ipv6},
        }
        items[name] = Item(data)
    return items


def _addr(a: Any) -> dict[str, str]:
    out = {"address": a.address}
    if a.netmask:
        out["netmask"] = a.netmask
    if getattr(a, "broadcast", None):
        out["broadcast"] = a.broadcast
    return out


# -- ports --------------------------------------------------------------------------
def scan_ports() -> dict[str, Item]:
    """Listening TCP sockets and bound UDP sockets (the host's open ports).

    Established connections come and go by the second; they are not inventory.
    """
    items: dict[str, Item] = {}
    names: dict[int, str] = {}
    for conn in psutil.net_connections(kind="inet"):
        tcp = conn.type == socket.SOCK_STREAM
        if tcp and conn.status != psutil.CONN_LISTEN:
            continue
        if not tcp and conn.raddr:
            continue
        if not conn.laddr:
            continue
        transport = "tcp" if tcp else "udp"
        family = "ipv6" if conn.family == socket.AF_INET6 else "ipv4"
        ip, port = conn.laddr.ip, conn.laddr.port
        data: dict[str, Any] = {
            "network": {"transport": transport, "type": family},
            "source": {"ip": ip, "port": port},
            "interface": {"state": "listening" if tcp else "bound"},
        }
        if conn.pid:
            if conn.pid not in names:
                try:
                    names[conn.pid] = psutil.Process(conn.pid).name()
                except psutil.Error:
                    names[conn.pid] = ""
            data["process"] = {"pid": conn.pid, "name": names[conn.pid]}
        items[f"{transport}:{family}:{ip}:{port}"] = Item(data)
    return items


def scanners(dpkg_status: str) -> dict[str, Scanner]:
    """Every collector this host can run, by name."""
    return {
        "system": scan_system,
        "hardware": scan_hardware,
        "packages": make_package_scanner(dpkg_status),
        "processes": scan_processes,
        "networks": scan_networks,
        "ports": scan_ports,
    }


#: collectors whose comparison leaves volatile fields out
STABLE: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {"hardware": stable_hardware}
