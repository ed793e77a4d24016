"""The ``processes`` collector: running processes (psutil), with the controlling terminal
from /proc/<pid>/stat.

Only fields that do not change while a process lives are collected (:func:`scan_processes`).
"""

from __future__ import annotations

from typing import Any

import psutil

from collectors.inventory.host import _compact, _read
from collectors.isotime import iso_utc
from collectors.state import Item

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
