"""Real journal files for the journald tests, written by systemd-journal-remote from the
journal export format (Debian package ``systemd-journal-remote``) and read by journalctl.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

JOURNAL_REMOTE = next(
    (
        p
        for p in ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote")
        if os.access(p, os.X_OK)
    ),
    None,
)

needs_journal_tools = pytest.mark.skipif(
    JOURNAL_REMOTE is None or shutil.which("journalctl") is None,
    reason="writing a real journal needs systemd-journal-remote (Debian package"
    " systemd-journal-remote) and journalctl (systemd); not installed here",
)


class JournalWriter:
    """Appends entries to ``directory/system.journal`` (one boot, rising timestamps)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.boot = uuid.uuid4().hex
        self._realtime = int(time.time() * 1_000_000)
        self._monotonic = 1_000_000

    @property
    def file(self) -> Path:
        return self.directory / "system.journal"

    def write(self, entries: Iterable[Mapping[str, str | bytes]]) -> None:
        out = bytearray()
        for fields in entries:
            self._realtime += 1
            self._monotonic += 1
            out += (
                f"__REALTIME_TIMESTAMP={self._realtime}\n"
                f"__MONOTONIC_TIMESTAMP={self._monotonic}\n_BOOT_ID={self.boot}\n"
            ).encode()
            for key, value in fields.items():
                if isinstance(value, bytes):
                    # the export format's binary form: name, LE64 length, the bytes
                    out += key.encode() + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
                else:
                    out += f"{key}={value}\n".encode()
            out += b"\n"
        assert JOURNAL_REMOTE is not None
        subprocess.run(
            [JOURNAL_REMOTE, f"--output={self.file}", "-"],
            input=bytes(out),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def messages(self, messages: Iterable[str], **fields: str) -> None:
        base = {"PRIORITY": "6", "SYSLOG_IDENTIFIER": "app", "_HOSTNAME": "h1", **fields}
        self.write({**base, "MESSAGE": m} for m in messages)

    def rotate(self) -> Path:
        """Archive the active file the way journald names it; the next write starts a new
        one."""
        archived = (
            self.directory
            / f"system@{uuid.uuid4().hex}-0000000000000001-{self._realtime:016x}.journal"
        )
        self.file.rename(archived)
        return archived
