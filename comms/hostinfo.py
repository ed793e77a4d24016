"""Facts about this host sent at enrollment and in every events body (docs/protocol.md).

``{"hostname", "architecture", "os": {"name", "type", "version"}, "ip": [...]}`` where ``ip``
lists the addresses of network interfaces that are up, loopback excluded (it says nothing
about the host), IPv4 first.
"""

from __future__ import annotations

import ipaddress
import platform
import socket
from typing import Any

import psutil


def host_facts() -> dict[str, Any]:
    """The host block of the agent metadata, read from the running system."""
    return {
        "hostname": socket.gethostname(),
        "architecture": platform.machine(),
        "os": os_facts(),
        "ip": ip_addresses(),
    }


def os_facts() -> dict[str, str]:
    """OS name, type and version: /etc/os-release on Linux, ``platform`` elsewhere."""
    os_type = platform.system()
    name, version = os_type, platform.release()
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        release = {}
    if release:
        name = release.get("NAME", name)
        version = release.get("VERSION_ID", release.get("VERSION", version))
    elif os_type == "Darwin":
        name, version = "macOS", platform.mac_ver()[0] or version
    elif os_type == "Windows":
        name, version = f"Windows {platform.release()}", platform.version()
    return {"name": name, "type": os_type, "version": version}


def ip_addresses() -> list[str]:
    """Addresses of interfaces that are up, loopback excluded, IPv4 before IPv6, no dups."""
    try:
        stats = psutil.net_if_stats()
        addrs = psutil.net_if_addrs()
    except OSError:
        return []
    v4: list[str] = []
    v6: list[str] = []
    for ifname, entries in addrs.items():
        st = stats.get(ifname)
        if st is None or not st.isup:
            continue
        for entry in entries:
            if entry.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            text = entry.address.split("%", 1)[0]  # drop the zone of link-local IPv6
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                continue
            if ip.is_loopback:
                continue
            target = v4 if ip.version == 4 else v6
            if text not in target:
                target.append(text)
    return v4 + v6
