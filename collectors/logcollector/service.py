"""The logcollector service: follow files, the systemd journal and command output.

Sources (``agentbus status`` shows each one's state under ``sources``):
- files: ``paths``, always; ``syslog_paths`` (the classic syslog files) only while the
  journal is not collected — where rsyslog runs beside journald it writes the journal's
  lines to them, and a line is never collected twice;
- the journal (journald.py): ``journald = "auto"`` reads it when journald runs, ``on``
  always, ``off`` never; its cursor is saved like a file's offset;
- commands (command_source.py): run on an interval, their output sent.

The rest of this docstring is about files.

Each step reads at most one batch from each followed file, sends it through the
acknowledged path and, once the forwarder committed it, saves the file's new offset. So a
restart resumes exactly after the last committed line: nothing lost, nothing repeated
(except when the forwarder committed a batch whose answer never arrived — then that batch
comes again; at-least-once).

Rotation:
- rename (logrotate's default): the path now names a new inode. The old file stays open
  and is read to its end; once it has been quiet for ``rotate_wait`` its last,
  unterminated line is sent too and it is closed. The new file is read from its start.
- copytruncate: the same inode became shorter than our offset, or its first bytes changed:
  read again from its start. (Lines written between our last read and the copy are in the
  copy only — inherent to copytruncate.)
- while stopped: at start, a saved inode no longer at its path is looked for in the same
  directory and finished from its saved offset.

What is read (the agent reads as root what a local user may have planted; tail.py opens
each file): a symbolic link found by a glob is never followed, nor is a link to a
directory below a glob's fixed part; a link named in ``paths`` itself (the admin's
``/var/log/app.log -> ...``) is followed when the link belongs to one of ``file_owners``;
a file that is not regular (a FIFO, a device) or whose owner is not one of
``file_owners`` or the agent's user is skipped. Each skip is counted by reason
(``files_skipped``) and logged once per file.
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import os
import pwd
import stat
import time
from pathlib import Path
from typing import Any, NamedTuple

from loguru import logger

from collectors import metrics as km
from collectors.base import CollectorService
from collectors.logcollector.command_source import (
    CommandRunner,
    Result,
    configured_sources,
    output_lines,
)
from collectors.logcollector.journald import (
    JOURNALD_RUNTIME,
    Entry,
    JournalError,
    JournalReader,
    field_bytes,
    field_int,
    field_text,
    find_journalctl,
    iso_second,
    journalctl_argv,
    journald_present,
    source_name,
)
from collectors.logcollector.lines import now_iso, text_event
from collectors.logcollector.offsets import OffsetRow, OffsetStore, same_head
from collectors.logcollector.settings import LogcollectorSettings
from collectors.logcollector.tail import FileTail, Line, Skipped, check_watched
from core.backoff import compute_backoff
from core.config import Config
from core.logs import RateLimitedLog

MODULE = "logcollector"
COLLECTOR = "file"
JOURNALD = "journald"
COMMAND = "command"
#: journal entries read per step (one acknowledged batch)
JOURNAL_BATCH = 5000
#: waits before journalctl is started again after it ended
JOURNAL_RETRY_INITIAL = 1.0
JOURNAL_RETRY_MAX = 60.0


class Candidate(NamedTuple):
    """A file the configuration names now."""

    #: its name in events and in the followed files
    path: str
    #: what to open (the target of an admin's link named in paths; else ``path``)
    source: str
    #: the directory it was found beneath (a glob's fixed part), None for a named file
    base: str | None


class LogcollectorService(CollectorService):
    """Tails files, the journal and command output; see the module docstring."""

    name = "logcollector"
    declared = km.LOGCOLLECTOR

    def __init__(self, config: Config, args: argparse.Namespace | None = None) -> None:
        super().__init__(config)
        self.settings: LogcollectorSettings = config.collectors.logcollector
        self.store: OffsetStore | None = None
        #: followed files by the path they were found under
        self.tails: dict[str, FileTail] = {}
        #: files renamed away or deleted, read to their end then closed
        self.retired: list[FileTail] = []
        self._saved: dict[tuple[int, int], OffsetRow] = {}
        self._log = RateLimitedLog(10)
        self._first_discovery = True
        #: uids whose files are read: file_owners and the agent's own user
        self.owners = allowed_owners(self.settings.file_owners)
        #: files skipped, by name: (reason, inode) as last counted
        self._skipped: dict[str, tuple[str, tuple[int, int]]] = {}
        s = self.settings
        #: the journal is read (decided once, at start)
        self.journal_on = s.journald == "on" or (s.journald == "auto" and journald_present(s))
        #: the files and globs followed
        self.patterns = [*s.paths, *([] if self.journal_on else s.syslog_paths)]
        self.journal: JournalReader | None = None
        self._journal_source = source_name(s)
        self._journal_cursor: str | None = None
        self._journal_state = "starting" if self.journal_on else self._journal_off_reason()
        self._journal_failures = 0
        self._journal_retry_at = 0.0
        self._journal_skip: str | None = None
        self._iso_second = -1
        self._iso_prefix = ""
        self.commands = CommandRunner(configured_sources(s), s, self.stop_event, now_iso)

    # -- lifecycle -------------------------------------------------------------------
    def startup(self) -> None:
        super().startup()
        self.store = OffsetStore(self.state_path())
        self._saved = self.store.load()
        self.discover()
        self._resume_rotated()
        if self.journal_on:
            self._journal_cursor = self.store.cursor(self._journal_source)
            self._start_journal()
        self.commands.start()

    def main_loop(self) -> None:
        next_scan = 0.0
        while not self.stop_event.is_set():
            try:
                now = time.monotonic()
                if now >= next_scan:
                    self.discover()
                    next_scan = now + self.settings.poll_interval
                busy = self.step()
            except Exception as exc:  # never let one bad file stop the collector
                logger.exception("logcollector step failed")
                self.metrics.error(f"step failed: {exc}")
                busy = False
            if not busy:
                # Following files means polling them (the stdlib has no file-change
                # notification): an idle logcollector wakes once per poll_interval (2/s by
                # default), the documented cost. A stop request ends the wait at once.
                self.stop_event.wait(self.settings.poll_interval)

    def shutdown(self, deadline: float) -> None:
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        self.commands.join(max(0.0, min(1.0, deadline - time.monotonic())))
        for tail in [*self.tails.values(), *self.retired]:
            tail.close()
        self.tails.clear()
        self.retired.clear()
        if self.store is not None:
            self.store.close()
        super().shutdown(deadline)

    def status(self) -> dict[str, Any]:
        self.metrics.set(km.FILES, len(self.tails))
        self.metrics.set(km.ROTATED_FILES, len(self.retired))
        self.metrics.fact("sources", self.sources())
        return super().status()

    def sources(self) -> dict[str, Any]:
        """Which sources are live, and why the others are not."""
        s = self.settings
        if self.journal_on:
            syslog = "off: the journal is collected (the same lines)" if s.syslog_paths else ""
        else:
            syslog = "live" if s.syslog_paths else ""
        commands = self.commands.sources
        out: dict[str, Any] = {
            "journald": self._journal_state,
            "syslog_files": syslog or "off: none configured",
            "files": "live" if s.paths else "off: none configured",
            "commands": f"live: {len(commands)}" if commands else "off: none configured",
        }
        if commands:
            out["command_runs"] = {
                c.command: {"runs": c.runs, "last_run": c.last_run, "last_error": c.last_error}
                for c in commands
            }
        return out

    # -- finding files ---------------------------------------------------------------
    def matching_paths(self) -> list[Candidate]:
        """Every file the configured paths and globs name now, minus exclusions."""
        found: list[Candidate] = []
        seen: set[str] = set()
        for pattern in self.patterns:
            if glob.has_magic(pattern):
                base = _fixed_dir(pattern)
                names = [Candidate(n, n, base) for n in sorted(glob.glob(pattern))]
            else:
                names = [Candidate(pattern, self._named_source(pattern), None)]
            for cand in names:
                if cand.path in seen or self._excluded(cand.path):
                    continue
                seen.add(cand.path)
                found.append(cand)
        return found

    def _named_source(self, path: str) -> str:
        """What a path named in the configuration stands for: itself, or the target of a
        link owned by an allowed user (one level: the target is opened without following)."""
        try:
            st = os.lstat(path)
            if not stat.S_ISLNK(st.st_mode) or st.st_uid not in self.owners:
                return path
            return os.path.join(os.path.dirname(path), os.readlink(path))
        except OSError:
            return path

    def _excluded(self, path: str) -> bool:
        return any(fnmatch.fnmatch(path, pat) for pat in self.settings.exclude)

    def discover(self) -> None:
        """Open new files, notice rotation (new inode at a path) and vanished paths."""
        first = self._first_discovery
        self._first_discovery = False
        present: set[str] = set()
        known_paths = {row.path for row in self._saved.values()} if first else set()
        skipped: set[str] = set()
        for cand in self.matching_paths():
            path = cand.path
            try:
                # lstat: a link is looked at, not followed (tail.py opens without following)
                st = os.lstat(cand.source)
                check_watched(st, self.owners)
            except OSError:
                continue
            except Skipped as skip:
                skipped.add(path)
                self._skip(path, skip, (st.st_dev, st.st_ino))
                continue
            present.add(path)
            key = (st.st_dev, st.st_ino)
            tail = self.tails.get(path)
            if tail is not None and tail.key == key:
                if tail.rewritten():
                    self._restart(tail)
                continue
            if tail is not None:
                logger.info("{} was rotated (new inode); finishing the old file", path)
                self.metrics.inc(km.ROTATIONS)
                self._retire(tail)
            if any(t.key == key for t in self.retired):
                continue  # a rotated file that a glob also matches under its new name
            # "end" applies to files seen for the first time at start; a file that replaced
            # one we followed (rotated while we were stopped) is new: read all of it.
            from_end = first and self.settings.read_from == "end" and path not in known_paths
            if self._open(cand, key, read_from_end=from_end):
                skipped.discard(path)
            else:
                skipped.add(path)
        for path in [p for p in self.tails if p not in present]:
            self._retire(self.tails.pop(path))
        # Forget the skips of files gone or now fine: a file planted again counts again,
        # and a directory full of planted links does not grow this map for ever.
        for path in [p for p in self._skipped if p not in skipped]:
            del self._skipped[path]

    def _skip(self, path: str, skip: Skipped, key: tuple[int, int]) -> None:
        """Count and log a skipped file once (until it changes or goes away)."""
        if self._skipped.get(path) == (skip.reason, key):
            return
        self._skipped[path] = (skip.reason, key)
        self.metrics.inc(km.FILES_SKIPPED, reason=skip.reason)
        self._log.warning(f"skip-{skip.reason}", "not reading {}: {}", path, skip)

    def _open(self, cand: Candidate, key: tuple[int, int], *, read_from_end: bool) -> bool:
        """Follow a file; False if it was skipped (counted) or could not be opened."""
        path = cand.path
        saved = self._saved.get(key)
        try:
            if saved is not None:
                tail = self._open_tail(cand, saved.offset, saved.skipping)
                if tail.key != key or not _still_same(tail, saved):
                    # Another file behind the same inode (reused, or rewritten): start over.
                    tail.reset()
            else:
                tail = self._open_tail(cand, None if read_from_end else 0)
        except Skipped as skip:
            self._skip(path, skip, key)
            return False
        except OSError as exc:
            self.metrics.inc(km.OPEN_ERRORS)
            self._log.warning("open", "cannot read {}: {}", path, exc.strerror or exc)
            return True  # not a skip: counted as an open error, tried again
        logger.info("following {} from offset {}", path, tail.offset)
        self.tails[path] = tail
        self._save(tail)
        return True

    def _open_tail(self, cand: Candidate, offset: int | None, skipping: bool = False) -> FileTail:
        return FileTail.open(
            cand.path,
            offset,
            skipping=skipping,
            max_line_bytes=self.settings.max_line_bytes,
            owners=self.owners,
            source=cand.source,
            base=cand.base,
        )

    def _retire(self, tail: FileTail) -> None:
        tail.retired = True
        tail.last_active = time.monotonic()
        self.retired.append(tail)

    def _restart(self, tail: FileTail) -> None:
        logger.info("{} was truncated or rewritten; reading it from the start", tail.path)
        self.metrics.inc(km.TRUNCATIONS)
        tail.reset()
        self._save(tail)

    def _resume_rotated(self) -> None:
        """Finish files rotated while we were stopped; forget rows of files that are gone."""
        followed = {t.key for t in self.tails.values()}
        assert self.store is not None
        for key, row in self._saved.items():
            if key in followed:
                continue
            path = _find_inode(Path(row.path).parent, key)
            if path is None:
                self.store.delete(key)
                continue
            try:
                tail = FileTail.open(
                    path,
                    row.offset,
                    skipping=row.skipping,
                    max_line_bytes=self.settings.max_line_bytes,
                    owners=self.owners,
                )
            except (OSError, Skipped):
                continue
            if tail.key != key or not _still_same(tail, row):
                tail.close()
                continue
            if tail.size() <= row.offset:
                tail.close()  # fully read already; keep its row so a glob does not reread it
                continue
            logger.info("finishing {} (rotated from {} while stopped)", path, row.path)
            tail.path = row.path  # its lines keep the path they were found under
            self._retire(tail)

    # -- reading ---------------------------------------------------------------------
    def step(self) -> bool:
        """One batch from each source; True if anything was read (more may be waiting)."""
        busy = False
        if self.journal_on:
            busy |= self._pump_journal()
        for result in self.commands.results():
            if self.stop_event.is_set():
                return busy
            self._send_command(result)
        for tail in list(self.tails.values()):
            if self.stop_event.is_set():
                return busy
            busy |= self._pump(tail)
        for tail in list(self.retired):
            if self.stop_event.is_set():
                return busy
            busy |= self._pump(tail)
        return busy

    def _pump(self, tail: FileTail) -> bool:
        try:
            return self._pump_file(tail)
        except OSError as exc:
            self.metrics.inc(km.READ_ERRORS)
            self._log.warning("read", "cannot read {}: {}", tail.path, exc.strerror or exc)
            if tail.retired:
                self._close_retired(tail)
            return False

    def _pump_file(self, tail: FileTail) -> bool:
        size = tail.size()
        if size < tail.offset:
            self._restart(tail)
        if size != tail.last_size:
            tail.last_size = size
            tail.last_active = time.monotonic()
        start = (tail.offset, tail.skipping)
        final = False
        if size <= tail.offset:
            if not tail.retired:
                return False
            if time.monotonic() - tail.last_active < self.settings.rotate_wait:
                return False
            final = True
        elif tail.retired and time.monotonic() - tail.last_active >= self.settings.rotate_wait:
            final = True
        chunk = tail.read(final=final)
        if chunk.lines:
            created = now_iso()
            events = [self._event(tail.path, line, created) for line in chunk.lines]
            assert self.sender is not None
            done = self.sender.send_count(events)
            if done < len(events):
                # Stopping: commit what the forwarder has, the rest comes after a restart.
                if done:
                    _, _, _, end, skipping = chunk.lines[done - 1]
                    self._commit(tail, end, skipping, done)
                return False
            self._commit(tail, chunk.end, chunk.skipping, len(events))
        elif chunk.end != tail.offset or chunk.skipping != tail.skipping:
            self._commit(tail, chunk.end, chunk.skipping, 0)  # skipped part of a long line
        if final and tail.offset >= tail.size():
            self._close_retired(tail)
            return False
        return (tail.offset, tail.skipping) != start

    def _commit(self, tail: FileTail, end: int, skipping: bool, lines: int) -> None:
        tail.offset = end
        tail.skipping = skipping
        self._save(tail)
        self.metrics.inc(km.LINES, lines)

    def _save(self, tail: FileTail) -> None:
        assert self.store is not None
        row = tail.row()
        self.store.save(row)
        self._saved[row.key] = row

    def _close_retired(self, tail: FileTail) -> None:
        try:
            gone = tail.fd < 0 or tail.links() == 0
        except OSError:
            gone = True
        if gone:
            # Deleted: forget it, so a new file that reuses the inode starts at 0.
            assert self.store is not None
            self.store.delete(tail.key)
            self._saved.pop(tail.key, None)
        tail.close()
        if tail in self.retired:
            self.retired.remove(tail)
        logger.info("finished rotated file {}", tail.path)

    def _event(self, path: str, line: Line, created: str) -> dict[str, Any]:
        start, raw, truncated = line[0], line[1], line[2]
        event, tags = text_event(raw, truncated, created, self.metrics)
        data: dict[str, Any] = {"event": event, "log": {"file": {"path": path}, "offset": start}}
        if tags:
            data["tags"] = tags
        return {"module": MODULE, "collector": COLLECTOR, "data": data}

    # -- the journal -----------------------------------------------------------------
    def _journal_off_reason(self) -> str:
        s = self.settings
        if s.journald == "off":
            return "off: journald = off"
        if s.journald_directory:
            return f"off: no journal directory {s.journald_directory}"
        return f"off: journald does not run (no {JOURNALD_RUNTIME})"

    def _start_journal(self) -> None:
        journalctl = find_journalctl()
        from_end = self.settings.read_from == "end"
        try:
            if journalctl is None:
                raise JournalError("not_started", "journalctl not found")
            argv = journalctl_argv(journalctl, self.settings, self._journal_cursor, from_end)
            reader = JournalReader(argv, max_entry_bytes=8 * self.settings.max_line_bytes + 65536)
            reader.start()
        except JournalError as exc:
            self._journal_failed(exc)
            return
        self.journal = reader
        #: the saved cursor's own entry, printed first by --cursor (when it still exists)
        self._journal_skip = self._journal_cursor
        where = (
            f"at cursor {self._journal_cursor}"
            if self._journal_cursor
            else ("from its end" if from_end else "from its start")
        )
        logger.info("reading the journal {} (journalctl pid {})", where, reader.pid)
        self._journal_state = "live"

    def _journal_failed(self, exc: JournalError) -> None:
        self.metrics.inc(km.JOURNAL_ERRORS, reason=exc.reason)
        self._journal_failures += 1
        delay = compute_backoff(
            self._journal_failures,
            initial=JOURNAL_RETRY_INITIAL,
            maximum=JOURNAL_RETRY_MAX,
            jitter="equal",
        )
        self._journal_retry_at = time.monotonic() + delay
        self._journal_state = f"error: {exc}; trying again in {delay:.0f}s"
        self.metrics.error(f"journal: {exc}")
        self._log.warning("journal", "journal: {}; trying again in {:.1f}s", exc, delay)

    def _pump_journal(self) -> bool:
        if self.journal is None:
            if time.monotonic() >= self._journal_retry_at:
                self._start_journal()
            return False
        try:
            entries = self.journal.read(JOURNAL_BATCH)
        except JournalError as exc:
            self.journal.close()
            self.journal = None
            self._journal_failed(exc)
            return False
        if not entries:
            return False
        self._journal_failures = 0
        created = now_iso()
        events: list[dict[str, Any]] = []
        #: the cursor to save once events[: i + 1] are committed
        cursors: list[str] = []
        last: str | None = None
        for entry in entries:
            if entry.problem:
                self.metrics.inc(km.JOURNAL_ERRORS, reason=entry.problem)
                self._log.warning(
                    f"journal-{entry.problem}", "journal: skipped an entry ({})", entry.problem
                )
                continue
            skip, self._journal_skip = self._journal_skip, None
            if skip is not None and entry.cursor == skip:
                continue  # committed already
            last = entry.cursor
            event = self._journal_event(entry, created)
            if event is not None:
                events.append(event)
                cursors.append(entry.cursor or "")
        assert self.sender is not None
        done = self.sender.send_count(events) if events else 0
        self.metrics.inc(km.JOURNAL_ENTRIES, done)
        if done == len(events):
            self._save_cursor(last)  # entries without a message too
            return True
        if done:
            self._save_cursor(cursors[done - 1])
        return False  # stopping: the rest comes again after a restart

    def _save_cursor(self, cursor: str | None) -> None:
        if cursor:
            assert self.store is not None
            self.store.save_cursor(self._journal_source, cursor)
            self._journal_cursor = cursor

    def _journal_event(self, entry: Entry, created: str) -> dict[str, Any] | None:
        f = entry.fields
        message = f.get("MESSAGE")
        limit = self.settings.max_line_bytes
        if isinstance(message, str) and len(message) * 4 <= limit:
            # the common case, taken as it is: UTF-8 text that cannot be over the limit
            if not message:
                return None
            event: dict[str, Any] = {"created": created, "original": message}
            tags: list[str] | None = None
        else:
            raw = field_bytes(message)
            if not raw:
                return None  # an entry without a message (like an empty line)
            truncated = len(raw) > limit
            if truncated:
                raw = _cut_utf8(raw, limit)
            event, tags = text_event(raw, truncated, created, self.metrics)
        data: dict[str, Any] = {"event": event}
        timestamp = self._realtime(f.get("__REALTIME_TIMESTAMP"))
        if timestamp is not None:
            data["@timestamp"] = timestamp
        log: dict[str, Any] = {"journal": {"cursor": entry.cursor}}
        syslog: dict[str, Any] = {}
        priority = field_int(f.get("PRIORITY"))
        if priority is not None:
            syslog["priority"] = priority
        identifier = field_text(f.get("SYSLOG_IDENTIFIER"))
        if identifier:
            syslog["appname"] = identifier
        if syslog:
            log["syslog"] = syslog
        data["log"] = log
        process: dict[str, Any] = {}
        pid = field_int(f.get("_PID"))
        if pid is None:
            pid = field_int(f.get("SYSLOG_PID"))
        if pid is not None:
            process["pid"] = pid
        comm = field_text(f.get("_COMM"))
        if comm:
            process["name"] = comm
        if process:
            data["process"] = process
        unit = field_text(f.get("_SYSTEMD_UNIT"))
        if unit:
            data["systemd"] = {"unit": unit}
        hostname = field_text(f.get("_HOSTNAME"))
        if hostname:
            data["host"] = {"hostname": hostname}
        if tags:
            data["tags"] = tags
        return {"module": MODULE, "collector": JOURNALD, "data": data}

    def _realtime(self, value: Any) -> str | None:
        """``__REALTIME_TIMESTAMP`` as ISO 8601; the formatted second is kept, since a
        backlog has many entries per second."""
        us = field_int(value)
        if us is None:
            return None
        second, rest = divmod(us, 1_000_000)
        if second != self._iso_second:
            self._iso_second, self._iso_prefix = second, iso_second(second)
        return f"{self._iso_prefix}.{rest // 1000:03d}Z"

    # -- commands --------------------------------------------------------------------
    def _send_command(self, result: Result) -> None:
        source, output = result.source, result.output
        if output.error:
            self.metrics.inc(km.COMMAND_RUNS, result=output.reason or "failed")
            self._log.warning(f"command-{source.command}", "command source: {}", output.error)
            return
        self.metrics.inc(km.COMMAND_RUNS, result="truncated" if output.truncated else "ok")
        if source.full:
            text = output.stdout.rstrip("\n")
            texts = [text] if text.strip() else []
        else:
            texts = output_lines(output.stdout)
        events = []
        for i, text in enumerate(texts):
            cut = output.truncated and i == len(texts) - 1  # the output was cut in it
            event, tags = text_event(text.encode("utf-8"), cut, result.created, self.metrics)
            command: dict[str, Any] = {"line": source.command, "full": source.full}
            if output.exit_code is not None:
                command["exit_code"] = output.exit_code
            data: dict[str, Any] = {"event": event, "log": {"command": command}}
            if tags:
                data["tags"] = tags
            events.append({"module": MODULE, "collector": COMMAND, "data": data})
        if events:
            assert self.sender is not None
            self.metrics.inc(km.COMMAND_EVENTS, self.sender.send_count(events))


def _cut_utf8(raw: bytes, limit: int) -> bytes:
    """``raw`` cut to ``limit`` bytes, not in the middle of a UTF-8 character."""
    cut = raw[:limit]
    for drop in range(4):
        try:
            (cut[: len(cut) - drop] if drop else cut).decode("utf-8")
            return cut[: len(cut) - drop] if drop else cut
        except UnicodeDecodeError:
            continue
    return cut  # not UTF-8 anyway: kept as bytes (original_base64)


def allowed_owners(names: list[str]) -> frozenset[int]:
    """The uids of ``names`` (users missing on this host are left out) and our own."""
    uids = {os.geteuid()}
    for name in names:
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            logger.debug("file_owners: no user {!r} on this host", name)
    return frozenset(uids)


def _fixed_dir(pattern: str) -> str:
    """The directory of a glob before its first wildcard (``/var/log`` of ``/var/log/*/x``)."""
    parts = pattern.split(os.sep)
    fixed: list[str] = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return os.sep.join(fixed) or (os.sep if pattern.startswith(os.sep) else os.curdir)


def _still_same(tail: FileTail, row: OffsetRow) -> bool:
    return tail.size() >= row.offset and same_head(tail.fd, row.head_len, row.head_sha1)


def _find_inode(directory: Path, key: tuple[int, int]) -> str | None:
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    if (
                        entry.inode() == key[1]
                        and entry.is_file(follow_symlinks=False)
                        and entry.stat(follow_symlinks=False).st_dev == key[0]
                    ):
                        return entry.path
                except OSError:
                    continue
    except OSError:
        return None
    return None
