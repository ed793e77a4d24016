"""Deterministic benchmark events: the same content for agentbus and for syslog-ng.

Event ``seq`` is always the same bytes (unless a send time is stamped into it), so runs
are comparable. Sizes are fixed: the compact JSON of an event's ``data`` (the data line
the forwarder sends) is exactly :data:`EVENT_BYTES` bytes, and its ``original`` field is
the raw syslog-like line syslog-ng gets (:data:`LINE_BYTES` bytes plus a newline).

Every line carries ``seq=<n> sent=<epoch seconds>`` so the sink can measure latency and
count distinct events; ``sent`` is zeros unless the sender stamps it (:func:`bus_event`
with ``sent=time.time()``). Lines are ASCII without quotes or backslashes, so JSON does
not change their length.

    python -m bench.events        # prints a sample and the sizes
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

#: bytes of the compact JSON data line of one event
EVENT_BYTES = 300
#: the file path the events claim to come from
LOG_PATH = "/var/log/syslog"
#: a fixed base time for ``created`` so unstamped events are identical across runs
BASE_TIME = 1_764_000_000.0

#: finds the sequence number and send time the sink uses for latency and distinct counts
SEQ_SENT_RE = re.compile(rb"seq=(\d+) sent=(\d+\.\d+)")

_HOSTS = ("web-01", "web-02", "db-01", "cache-03", "gw-01")
_PROGRAMS = ("sshd", "sudo", "cron", "kernel", "systemd", "nginx", "postfix/smtpd")
_MESSAGES = (
    "Accepted publickey for deploy from 10.0.4.17 port 52144 ssh2",
    "Failed password for invalid user admin from 203.0.113.9 port 40222 ssh2",
    "pam_unix(sudo:session): session opened for user root by deploy(uid=1001)",
    "(root) CMD (run-parts /etc/cron.hourly)",
    "nf_conntrack: table full, dropping packet",
    "Started Daily apt upgrade and clean activities.",
    "upstream timed out (110) while reading response header from upstream",
    "connect from unknown[198.51.100.23]",
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_FILLER = " pad=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" * 8


def _iso(ts: float) -> str:
    """RFC 3339 UTC with milliseconds: fixed width (24 chars)."""
    whole = int(ts)
    ms = int((ts - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"


def _skeleton_bytes() -> int:
    """Bytes of the data line with an empty ``original``."""
    return len(_dumps(_data("", _iso(BASE_TIME))))


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _data(original: str, created: str) -> dict[str, Any]:
    return {
        "event": {"created": created, "original": original},
        "log": {"file": {"path": LOG_PATH}},
    }


#: bytes of the raw syslog line (without its newline)
LINE_BYTES = EVENT_BYTES - _skeleton_bytes()


def syslog_line(seq: int, sent: float | None = None) -> str:
    """The raw syslog-like line of event ``seq`` (exactly LINE_BYTES chars, no newline)."""
    t = time.gmtime(int(BASE_TIME) + seq // 1000)
    host = _HOSTS[seq % len(_HOSTS)]
    prog = _PROGRAMS[seq % len(_PROGRAMS)]
    msg = _MESSAGES[seq % len(_MESSAGES)].replace('"', "'")
    pid = (seq * 7919) % 32768 + 1
    stamp = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    head = f"{stamp} {host} {prog}[{pid}]: seq={seq} sent={sent or 0.0:017.6f} {msg}"
    if len(head) >= LINE_BYTES:
        return head[:LINE_BYTES]
    return head + _FILLER[: LINE_BYTES - len(head)]


def event_data(seq: int, sent: float | None = None) -> dict[str, Any]:
    """The ``data`` of event ``seq``: its compact JSON is exactly EVENT_BYTES bytes."""
    created = _iso(sent if sent else BASE_TIME + seq / 1000.0)
    return _data(syslog_line(seq, sent), created)


def bus_event(seq: int, sent: float | None = None) -> dict[str, Any]:
    """Event ``seq`` as a bus envelope map (what a collector sends to the forwarder)."""
    return {
        "module": "logcollector",
        "collector": "file",
        "type": "stateless",
        "data": event_data(seq, sent),
    }


def bus_events(n: int, start: int = 0) -> list[dict[str, Any]]:
    """Events ``start`` .. ``start + n - 1`` as bus envelope maps (unstamped)."""
    return [bus_event(seq) for seq in range(start, start + n)]


def iter_bus_batches(n: int, batch: int = 500, start: int = 0) -> Iterator[list[dict[str, Any]]]:
    """The same events in lists of ``batch`` (one bus frame each), built lazily."""
    for first in range(start, start + n, batch):
        yield bus_events(min(batch, start + n - first), first)


def syslog_lines(n: int, start: int = 0) -> list[bytes]:
    """The raw lines for syslog-ng, each ending in ``\\n``."""
    return [(syslog_line(seq) + "\n").encode() for seq in range(start, start + n)]


def syslog_payload(n: int, start: int = 0) -> bytes:
    """All ``n`` raw lines as one buffer, ready for ``sendall``."""
    return b"".join(syslog_lines(n, start))


def data_line_bytes(data: dict[str, Any]) -> int:
    """Bytes of one data line as the forwarder sends it (compact JSON)."""
    return len(_dumps(data))


def total_bytes(n: int) -> int:
    """Total data-line bytes of ``n`` benchmark events (they are all the same size)."""
    return n * EVENT_BYTES


def total_line_bytes(n: int) -> int:
    """Total bytes of ``n`` raw lines including their newlines."""
    return n * (LINE_BYTES + 1)


if __name__ == "__main__":
    sample = bus_event(42)
    print(json.dumps(sample, separators=(",", ":")))
    print(f"data line: {data_line_bytes(sample['data'])} bytes; raw line: {LINE_BYTES} bytes")
    stamped = event_data(7, sent=time.time())
    assert data_line_bytes(stamped) == EVENT_BYTES, data_line_bytes(stamped)
    assert all(data_line_bytes(event_data(s)) == EVENT_BYTES for s in range(2000))
