"""The ``ports`` collector: the host's open ports (listening TCP, bound UDP) from
/proc/net/{tcp,udp}{,6}, and the processes holding them from /proc/<pid>/fd.

Queue lengths move between scans; :func:`stable_ports` leaves them out of the comparison.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from collectors.inventory.host import _compact, _hex_ip, _read
from collectors.state import Item

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
