"""The ``networks`` collector: one document per interface address, from psutil,
/sys/class/net (state, type, alias), /proc/net/route and /proc/net/ipv6_route (default
gateways) and ``ip -j address`` (leased or static).

Per-interface traffic counters move between scans; :func:`stable_networks` leaves them out
of the comparison.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import psutil

from collectors.inventory.host import _compact, _hex_ip, _ip, _read
from collectors.state import Item

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
