"""The systemd journal as a source: ``journalctl -o json --follow`` as a child process.

Why journalctl and not a library binding (python-systemd): journalctl is the host's own
reader, of the same version as the journald that wrote the files, so it reads every
journal format and compression the host writes (a binding built against another
libsystemd may not); it needs nothing compiled into the agent's install; it follows
rotation and new journal files itself; and a corrupt file can only end the child, which
is started again. It costs CPU in a second process (bench/RESULTS.md, "journald source":
the forwarder stays the bottleneck).

Position: each entry has a cursor. The service saves the cursor of the last entry the
forwarder committed (offsets.py) and starts journalctl again at it, so a restart, a
crash or a kill resumes right after the last committed entry: nothing lost, at most the
entries that were in flight sent again. ``--cursor`` (from that entry, which the service
then drops), not ``--after-cursor``: when the cursor's file was rotated away and deleted
meanwhile, journalctl places the cursor by its time, and ``--after-cursor`` then skips the
first entry after it blindly — one entry lost; ``--cursor`` starts at that entry.

Filters are journal matches, not text filters: entries of ``journald_units`` (the
unit's own processes, ``_SYSTEMD_UNIT``, and what systemd says about it, ``UNIT``) or of
``journald_identifiers`` (``SYSLOG_IDENTIFIER``), at ``journald_priority`` or more severe.
"""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from collectors.commands import ENV
from collectors.logcollector.settings import PRIORITIES, LogcollectorSettings

#: where journald keeps its sockets while it runs
JOURNALD_RUNTIME = Path("/run/systemd/journal")
#: the fields asked of journalctl (it adds __CURSOR and the timestamps to each entry)
FIELDS = (
    "MESSAGE",
    "PRIORITY",
    "SYSLOG_IDENTIFIER",
    "_SYSTEMD_UNIT",
    "_PID",
    "SYSLOG_PID",
    "_COMM",
    "_HOSTNAME",
)
_READ = 1024 * 1024
#: the size asked for journalctl's output pipe
PIPE_BYTES = 1024 * 1024
#: how long a read waits for more entries while they keep coming (fills a batch)
FILL_WAIT = 0.05


class JournalError(Exception):
    """journalctl could not start or ended; ``reason`` counts it (journal_errors)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class Entry:
    """One journal entry as journalctl printed it (or why it could not be read)."""

    fields: dict[str, Any]
    #: a line that is not an entry: "bad_entry" or "too_large"
    problem: str = ""

    @property
    def cursor(self) -> str | None:
        value = self.fields.get("__CURSOR")
        return value if isinstance(value, str) else None


def source_name(settings: LogcollectorSettings) -> str:
    """The key of the journal's saved cursor: its directory, or ``system``."""
    return settings.journald_directory or "system"


def journald_present(settings: LogcollectorSettings) -> bool:
    """Whether there is a journal to read: journald runs (or the configured directory is
    there)."""
    if settings.journald_directory:
        return Path(settings.journald_directory).is_dir()
    return JOURNALD_RUNTIME.is_dir()


def find_journalctl() -> str | None:
    return shutil.which("journalctl", path=ENV["PATH"])


def match_args(settings: LogcollectorSettings) -> list[str]:
    """journalctl's match arguments for the unit and identifier filters (OR-ed: ``+``)."""
    groups: list[list[str]] = []
    for unit in settings.journald_units:
        name = unit if "." in unit else f"{unit}.service"
        groups.append([f"_SYSTEMD_UNIT={name}"])
        groups.append([f"UNIT={name}"])
    if settings.journald_identifiers:
        groups.append([f"SYSLOG_IDENTIFIER={i}" for i in settings.journald_identifiers])
    args: list[str] = []
    for group in groups:
        if args:
            args.append("+")
        args.extend(group)
    return args


def journalctl_argv(
    journalctl: str, settings: LogcollectorSettings, cursor: str | None, from_end: bool
) -> list[str]:
    argv = [
        journalctl,
        "--output=json",
        "--follow",
        "--all",  # long and binary fields in full (cut to max_line_bytes by us)
        "--no-pager",
        "--quiet",
        f"--output-fields={','.join(FIELDS)}",
        f"--priority=0..{PRIORITIES.index(settings.journald_priority)}",
    ]
    if settings.journald_directory:
        argv.append(f"--directory={settings.journald_directory}")
    if cursor is not None:
        argv += [f"--cursor={cursor}", "--no-tail"]  # the entry itself comes first: dropped
    elif from_end:
        argv.append("--lines=0")
    else:
        argv.append("--no-tail")
    return argv + match_args(settings)


class JournalReader:
    """One journalctl child; ``read`` takes what it printed so far, without waiting."""

    def __init__(self, argv: list[str], *, max_entry_bytes: int) -> None:
        self.argv = argv
        self.max_entry_bytes = max_entry_bytes
        self.proc: subprocess.Popen[bytes] | None = None
        self._buf = bytearray()
        self._skipping = False
        self._err = bytearray()

    def start(self) -> None:
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=ENV,
                cwd="/",
                close_fds=True,
                start_new_session=True,  # its own process group: stopped whole
            )
        except OSError as exc:
            raise JournalError(
                "not_started", f"cannot run {self.argv[0]}: {exc.strerror or exc}"
            ) from None
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for pipe in (self.proc.stdout, self.proc.stderr):
            flags = fcntl.fcntl(pipe.fileno(), fcntl.F_GETFL)
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETFL, flags | os.O_NONBLOCK)
        try:
            # A 64 KiB pipe holds ~150 entries: journalctl would wait while a batch is
            # being committed. A bigger one lets it read ahead meanwhile.
            fcntl.fcntl(self.proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass  # over /proc/sys/fs/pipe-max-size: the default size works, slower

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def read(self, max_entries: int, fill_wait: float = FILL_WAIT) -> list[Entry]:
        """Up to about ``max_entries`` entries printed so far; JournalError once journalctl
        ended and everything it printed was read.

        journalctl writes in small pieces: while entries keep coming, wait up to
        ``fill_wait`` for more, so that a backlog goes to the forwarder in full batches
        (each acknowledged batch costs the forwarder a commit to disk). An idle journal
        returns at once.
        """
        assert self.proc is not None and self.proc.stdout is not None
        self._drain_stderr()
        fd = self.proc.stdout.fileno()
        entries: list[Entry] = []
        eof = False
        deadline = 0.0
        while len(entries) < max_entries:
            try:
                chunk = os.read(fd, _READ)
            except BlockingIOError:
                if not entries:
                    break
                now = time.monotonic()
                deadline = deadline or now + fill_wait
                if now >= deadline or not select.select([fd], [], [], deadline - now)[0]:
                    break
                continue
            if not chunk:
                eof = True
                break
            self._split(chunk, entries)
        if eof and not entries:
            code = self.proc.wait()
            self._drain_stderr()
            said = self._err.decode("utf-8", "replace").strip().splitlines()
            detail = f": {said[-1]}" if said else ""
            raise JournalError("exited", f"journalctl exited with {code}{detail}")
        return entries

    def _split(self, chunk: bytes, entries: list[Entry]) -> None:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                if not self._skipping:
                    self._buf += chunk[start:]
                    if len(self._buf) > self.max_entry_bytes:
                        # Never hold an unbounded line: drop it, skip to its end.
                        self._buf.clear()
                        self._skipping = True
                        entries.append(Entry({}, "too_large"))
                return
            if self._skipping:
                self._skipping = False
            else:
                self._buf += chunk[start:end]
                entries.append(parse_entry(bytes(self._buf)))
                self._buf.clear()
            start = end + 1

    def _drain_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        try:
            while chunk := os.read(self.proc.stderr.fileno(), 65536):
                self._err = (self._err + chunk)[-4096:]  # what it said last is enough
        except BlockingIOError:
            pass

    def close(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(2)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def parse_entry(line: bytes) -> Entry:
    try:
        fields = orjson.loads(line)
    except orjson.JSONDecodeError:
        return Entry({}, "bad_entry")
    if not isinstance(fields, dict) or not isinstance(fields.get("__CURSOR"), str):
        return Entry({}, "bad_entry")
    return Entry(fields)


def field_bytes(value: Any) -> bytes | None:
    """A field's value as journalctl's JSON gives it: text, bytes as a list of numbers (not
    UTF-8 or with control characters), or a list of values (a field set more than once:
    the first is kept)."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, list) and value:
        if all(isinstance(b, int) for b in value):
            try:
                return bytes(value)
            except ValueError:
                return None
        return field_bytes(value[0])
    return None


def field_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    raw = field_bytes(value)
    return raw.decode("utf-8", "replace") if raw is not None else None


def field_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = value if isinstance(value, str) else field_text(value)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def iso_second(second: int) -> str:
    """A Unix second as ISO 8601 UTC without its fraction (``2026-12-03T10:00:00``)."""
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
