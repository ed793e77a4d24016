"""The logcollector service: find the files, follow each one, one event per line.

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
import base64
import fnmatch
import glob
import os
import pwd
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from loguru import logger

from collectors import metrics as km
from collectors.base import CollectorService
from collectors.logcollector.offsets import OffsetRow, OffsetStore, same_head
from collectors.logcollector.settings import LogcollectorSettings
from collectors.logcollector.tail import FileTail, Line, Skipped, check_watched
from core.config import Config
from core.logs import RateLimitedLog

MODULE = "logcollector"
COLLECTOR = "file"


class Candidate(NamedTuple):
    """A file the configuration names now."""

    #: its name in events and in the followed files
    path: str
    #: what to open (the target of an admin's link named in paths; else ``path``)
    source: str
    #: the directory it was found beneath (a glob's fixed part), None for a named file
    base: str | None


class LogcollectorService(CollectorService):
    """Tails ``[collectors.logcollector] paths``; see the module docstring."""

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

    # -- lifecycle -------------------------------------------------------------------
    def startup(self) -> None:
        super().startup()
        self.store = OffsetStore(self.state_path())
        self._saved = self.store.load()
        self.discover()
        self._resume_rotated()

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
        return super().status()

    # -- finding files ---------------------------------------------------------------
    def matching_paths(self) -> list[Candidate]:
        """Every file the configured paths and globs name now, minus exclusions."""
        found: list[Candidate] = []
        seen: set[str] = set()
        for pattern in self.settings.paths:
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
        """One batch from each file; True if anything was read (more may be waiting)."""
        busy = False
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
            created = _now_iso()
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
        try:
            event: dict[str, Any] = {"created": created, "original": raw.decode("utf-8")}
            tags: list[str] | None = None
        except UnicodeDecodeError:
            # Keep the line readable and its exact bytes recoverable.
            event = {
                "created": created,
                "original": raw.decode("utf-8", errors="replace"),
                "original_base64": base64.b64encode(raw).decode("ascii"),
            }
            tags = ["invalid_utf8"]
            self.metrics.inc(km.INVALID_UTF8_LINES)
        if truncated:
            event["truncated"] = True
            tags = [*(tags or []), "truncated"]
            self.metrics.inc(km.TRUNCATED_LINES)
        data: dict[str, Any] = {"event": event, "log": {"file": {"path": path}, "offset": start}}
        if tags:
            data["tags"] = tags
        return {"module": MODULE, "collector": COLLECTOR, "data": data}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
