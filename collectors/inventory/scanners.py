"""What the host has: one function per inventory collector, each → {primary key: Item}.

Data comes from psutil, /proc, /sys, /etc/os-release and the package database (dpkg's
status file, else rpm). Every document holds only fields of its index's mapping
(:mod:`bus.indices`; the indices are strict), with their types; a value the host does not
offer is left out rather than sent empty. A scanner that cannot read its source raises;
the caller then skips that collector for this scan (it must not be mistaken for
"everything disappeared").
"""

from __future__ import annotations

import ipaddress
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from collectors.isotime import iso_utc
from collectors.state import Item

Scanner = Callable[[], dict[str, Item]]


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


# -- system -------------------------------------------------------------------------
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


# -- hardware -----------------------------------------------------------------------
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


# -- packages -----------------------------------------------------------------------
def _dpkg_record(info_dir: Path | None, name: str, arch: str) -> tuple[str, str]:
    """(path, install time) of a package's file list in dpkg's info directory.

    dpkg rewrites ``<name>[:<arch>].list`` when it installs or upgrades the package, so its
    mtime is the install time (dpkg keeps no other).
    """
    if info_dir is None:
        return "", ""
    for candidate in (info_dir / f"{name}:{arch}.list", info_dir / f"{name}.list"):
        try:
            st = candidate.stat()
        except OSError:
            continue
        return str(candidate), iso_utc(st.st_mtime)
    return "", ""


def parse_dpkg_status(text: str, info_dir: Path | None = None) -> dict[str, Item]:
    """Installed packages from the text of dpkg's status file (and its ``info`` dir)."""
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
        path, installed = _dpkg_record(info_dir, name, arch)
        # Maintainer, Section, Priority and Source have no field in the packages index.
        package = _compact(
            {
                "name": name,
                "version": fields.get("Version", ""),
                "architecture": arch,
                "type": "deb",
                "description": fields.get("Description", ""),
                "size": int(size) * 1024 if size.isdigit() else None,
                "installed": installed,
                "path": path,
            }
        )
        # Name and architecture identify a package: an upgrade is an update of it.
        items[f"deb:{name}:{arch}"] = Item({"package": package})
    return items


def scan_rpm() -> dict[str, Item]:
    fmt = "%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{SIZE}\\t%{INSTALLTIME}\\t%{SUMMARY}\\n"
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
        name, version, arch, size, installed, summary = parts[:6]
        package = _compact(
            {
                "name": name,
                "version": version,
                "architecture": arch,
                "type": "rpm",
                "description": summary,
                "size": int(size) if size.isdigit() else None,
                "installed": iso_utc(int(installed)) if installed.isdigit() else None,
            }
        )
        items[f"rpm:{name}:{arch}"] = Item({"package": package})
    return items


def make_package_scanner(dpkg_status: str) -> Scanner:
    def scan_packages() -> dict[str, Item]:
        path = Path(dpkg_status)
        if path.exists():
            info = path.parent / "info"
            return parse_dpkg_status(
                path.read_text(encoding="utf-8", errors="replace"),
                info if info.is_dir() else None,
            )
        if shutil.which("rpm"):
            return scan_rpm()
        raise FileNotFoundError(
            f"no package database: {dpkg_status} is absent and rpm is not installed"
        )

    return scan_packages


# -- processes ----------------------------------------------------------------------
_PROC_ATTRS = ["pid", "ppid", "name", "cmdline", "create_time", "uids", "gids"]


def _tty_major(pid: int) -> int | None:
    """Major number of the process's controlling terminal (None: it has none)."""
    stat = _read(f"/proc/{pid}/stat")
    # "pid (comm) state ppid pgrp session tty_nr ...": comm may hold spaces and parentheses
    fields = stat.rpartition(")")[2].split()
    if len(fields) < 5 or not fields[4].lstrip("-").isdigit():
        return None
    tty_nr = int(fields[4])
    return (tty_nr >> 8) & 0xFFF if tty_nr else None


def scan_processes() -> dict[str, Item]:
    """Running processes; only fields that do not change while a process lives.

    CPU, memory and state change all the time and would make every process an update at
    every scan; they are not collected. The key is pid + start time, so a reused pid is a
    new document (delete + create), not an update.
    """
    items: dict[str, Item] = {}
    for proc in psutil.process_iter(_PROC_ATTRS):
        info = proc.info
        if info.get("create_time") is None:
            continue
        pid = info["pid"]
        cmdline = [str(a) for a in info.get("cmdline") or []]
        process: dict[str, Any] = _compact(
            {
                "pid": pid,
                "name": info.get("name") or "",
                "command_line": " ".join(cmdline),
                "start": iso_utc(info["create_time"]),
            }
        )
        if cmdline:
            process["args"] = cmdline
        process["parent"] = {"pid": info.get("ppid") or 0}
        # The main thread's id is the process id (Linux: tid of the leader == tgid).
        process["thread"] = {"id": pid}
        uids, gids = info.get("uids"), info.get("gids")
        if uids is not None:
            process["user"] = {"id": str(uids.effective)}
            process["real_user"] = {"id": str(uids.real)}
            process["saved_user"] = {"id": str(uids.saved)}
        if gids is not None:
            process["group"] = {"id": str(gids.effective)}
            process["real_group"] = {"id": str(gids.real)}
            process["saved_group"] = {"id": str(gids.saved)}
        major = _tty_major(pid)
        if major is not None:
            process["tty"] = {"char_device": {"major": major}}
        items[f"{pid}:{int(info['create_time'] * 1000)}"] = Item({"process": process})
    return items


# -- networks -----------------------------------------------------------------------
#: ARPHRD_* link types of /sys/class/net/<if>/type
_LINK_TYPES = {
    1: "ethernet",
    24: "ieee1394",
    32: "infiniband",
    512: "ppp",
    768: "ipip",
    769: "ip6ip6",
    772: "loopback",
    776: "sit",
    778: "gre",
    801: "wireless",
    823: "ip6gre",
    65534: "none",
}
#: per-interface traffic figures, kept out of the comparison
NETWORK_VOLATILE = ("network",)


def _interface_type(name: str) -> str:
    base = Path("/sys/class/net", name)
    for marker, kind in (("wireless", "wireless"), ("bridge", "bridge"), ("bonding", "bond")):
        if (base / marker).exists():
            return kind
    raw = _read(base / "type")
    if not raw.isdigit():
        return ""
    return _LINK_TYPES.get(int(raw), "other")


def _hex_ip(text: str) -> str:
    """An address as /proc/net prints it: 32-bit words in host byte order, in hex."""
    raw = b"".join(
        int(text[i : i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(text), 8)
    )
    return str(ipaddress.ip_address(raw))


def default_gateways() -> dict[tuple[str, str], tuple[str, int]]:
    """{(interface, "ipv4"|"ipv6"): (gateway, metric)} of the default routes (lowest metric)."""
    routes: dict[tuple[str, str], tuple[str, int]] = {}

    def keep(iface: str, family: str, gateway: str, metric: int) -> None:
        was = routes.get((iface, family))
        if was is None or metric < was[1]:
            routes[(iface, family)] = (gateway, metric)

    for line in _read("/proc/net/route").splitlines()[1:]:
        f = line.split()
        # Iface Destination Gateway Flags RefCnt Use Metric Mask ...; RTF_GATEWAY = 0x2
        if len(f) >= 8 and f[1] == "00000000" and f[7] == "00000000" and int(f[3], 16) & 2:
            keep(f[0], "ipv4", _hex_ip(f[2]), int(f[6]))
    for line in _read("/proc/net/ipv6_route").splitlines():
        f = line.split()
        # dest plen src splen next_hop metric refcnt use flags iface (big-endian hex)
        if len(f) >= 10 and int(f[1], 16) == 0 and f[4] != "0" * 32 and int(f[8], 16) & 2:
            keep(f[9], "ipv6", str(ipaddress.IPv6Address(bytes.fromhex(f[4]))), int(f[5], 16))
    return routes


def dynamic_addresses() -> dict[tuple[str, str], bool] | None:
    """{(interface, address): leased?} from ``ip -j address`` (None: ``ip`` is missing).

    The kernel marks an address "dynamic" when it has a lifetime: leased by DHCP (or, for
    IPv6, autoconfigured); a permanent address was set by hand or by static configuration.
    """
    ip = shutil.which("ip")
    if ip is None:
        return None
    try:
        done = subprocess.run(
            [ip, "-j", "address", "show"], capture_output=True, text=True, timeout=10, check=True
        )
        links = json.loads(done.stdout or "[]")
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    out: dict[tuple[str, str], bool] = {}
    for link in links if isinstance(links, list) else []:
        for addr in link.get("addr_info") or []:
            if "local" in addr:
                out[(str(link.get("ifname")), _ip(str(addr["local"])))] = bool(addr.get("dynamic"))
    return out


def scan_networks() -> dict[str, Item]:
    """One document per interface address (an interface without any: one for itself).

    Key ``<interface>:<ipv4|ipv6>:<address>`` (or ``<interface>``).
    """
    addrs = psutil.net_if_addrs()
    stats = psutil.net_if_stats()
    traffic = psutil.net_io_counters(pernic=True)
    gateways = default_gateways()
    leased = dynamic_addresses()
    items: dict[str, Item] = {}
    for name, entries in addrs.items():
        st = stats.get(name)
        mac = next((a.address for a in entries if a.family == psutil.AF_LINK and a.address), "")
        state = _read(Path("/sys/class/net", name, "operstate"))
        if not state and st is not None:
            state = "up" if st.isup else "down"
        interface = _compact(
            {"mtu": st.mtu if st else None, "state": state, "type": _interface_type(name)}
        )
        observer = {
            "ingress": {
                "interface": _compact(
                    {"name": name, "alias": _read(Path("/sys/class/net", name, "ifalias"))}
                )
            }
        }
        host: dict[str, Any] = _compact({"mac": mac})
        io = traffic.get(name)
        if io is not None:
            host["network"] = {
                "egress": {
                    "bytes": io.bytes_sent,
                    "packets": io.packets_sent,
                    "errors": io.errout,
                    "drops": io.dropout,
                },
                "ingress": {
                    "bytes": io.bytes_recv,
                    "packets": io.packets_recv,
                    "errors": io.errin,
                    "drops": io.dropin,
                },
            }
        found = False
        for a in entries:
            if a.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            family = "ipv4" if a.family == socket.AF_INET else "ipv6"
            address = _ip(a.address)
            network: dict[str, Any] = _compact(
                {
                    "type": family,
                    "netmask": a.netmask and _ip(a.netmask),
                    "broadcast": a.broadcast and _ip(a.broadcast),
                }
            )
            route = gateways.get((name, family))
            if route is not None:
                network["gateway"], network["metric"] = route
            if leased is not None and (name, address) in leased:
                network["dhcp"] = "enabled" if leased[(name, address)] else "disabled"
            data = {
                "observer": observer,
                "interface": interface,
                "host": {**host, "ip": address},
                "network": network,
            }
            items[f"{name}:{family}:{address}"] = Item(data)
            found = True
        if not found:
            items[name] = Item({"observer": observer, "interface": interface, "host": host})
    return items


def stable_networks(data: dict[str, Any]) -> dict[str, Any]:
    """A network document without the interface's traffic counters."""
    host = {k: v for k, v in data["host"].items() if k not in NETWORK_VOLATILE}
    return {**data, "host": host}


# -- ports --------------------------------------------------------------------------
_TCP_LISTEN = 0x0A


def _socket_owners(inodes: set[int]) -> dict[int, int]:
    """{socket inode: lowest pid holding it} (only processes we may look into)."""
    owners: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            fds = os.scandir(f"/proc/{pid}/fd")
        except OSError:
            continue
        with fds:
            for fd in fds:
                try:
                    target = os.readlink(fd.path)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inode = int(target[8:-1])
                    if inode in inodes and (inode not in owners or pid < owners[inode]):
                        owners[inode] = pid
    return owners


def _proc_net_sockets() -> list[dict[str, Any]]:
    """Listening TCP and unconnected UDP sockets from /proc/net/{tcp,udp}{,6}."""
    found: list[dict[str, Any]] = []
    for proto in ("tcp", "udp"):
        for suffix, family in (("", "ipv4"), ("6", "ipv6")):
            path = Path(f"/proc/net/{proto}{suffix}")
            if suffix and not path.exists():
                continue  # IPv6 disabled; without the IPv4 table the scan fails (never "none")
            for line in path.read_text().splitlines()[1:]:
                f = line.split()
                if len(f) < 10:
                    continue
                local_ip, local_port = f[1].split(":")
                remote_ip, remote_port = f[2].split(":")
                if proto == "tcp" and int(f[3], 16) != _TCP_LISTEN:
                    continue
                if proto == "udp" and int(remote_port, 16) != 0:
                    continue  # a connected UDP socket is a conversation, not an open port
                tx_queue, rx_queue = f[4].split(":")
                found.append(
                    {
                        "protocol": proto,
                        "family": family,
                        "ip": _hex_ip(local_ip),
                        "port": int(local_port, 16),
                        "remote_ip": _hex_ip(remote_ip),
                        "remote_port": int(remote_port, 16),
                        "tx_queue": int(tx_queue, 16),
                        "rx_queue": int(rx_queue, 16),
                        "inode": int(f[9]),
                    }
                )
    return found


#: socket queue lengths, kept out of the comparison
PORTS_VOLATILE = ("host",)


def scan_ports() -> dict[str, Item]:
    """Listening TCP sockets and bound UDP sockets (the host's open ports).

    Established connections come and go by the second; they are not inventory. Key
    ``<tcp|udp>:<ipv4|ipv6>:<ip>:<port>``; of several sockets on one address (SO_REUSEPORT)
    the one with the lowest inode stands for them.
    """
    sockets = sorted(_proc_net_sockets(), key=lambda s: s["inode"])
    owners = _socket_owners({s["inode"] for s in sockets if s["inode"]})
    names: dict[int, str] = {}
    items: dict[str, Item] = {}
    for s in sockets:
        key = f"{s['protocol']}:{s['family']}:{s['ip']}:{s['port']}"
        if key in items:
            continue
        data: dict[str, Any] = {
            "network": {"protocol": s["protocol"]},
            "source": {"ip": s["ip"], "port": s["port"]},
            "destination": {"ip": s["remote_ip"], "port": s["remote_port"]},
            "interface": {"state": "listening"},
            "host": {
                "network": {
                    "egress": {"queue": s["tx_queue"]},
                    "ingress": {"queue": s["rx_queue"]},
                }
            },
        }
        if s["inode"]:
            data["file"] = {"inode": str(s["inode"])}
        pid = owners.get(s["inode"])
        if pid is not None:
            if pid not in names:
                names[pid] = _read(f"/proc/{pid}/comm")
            data["process"] = _compact({"pid": pid, "name": names[pid]})
        items[key] = Item(data)
    return items


def stable_ports(data: dict[str, Any]) -> dict[str, Any]:
    """A port document without its queue lengths."""
    return {k: v for k, v in data.items() if k not in PORTS_VOLATILE}


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
STABLE: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "system": stable_system,
    "hardware": stable_hardware,
    "networks": stable_networks,
    "ports": stable_ports,
}
