"""Walking the watched directories: one document per file, with its hashes and attributes.

A file whose size, mtime, ctime and inode are all unchanged since the last scan keeps
its previous hashes and attributes without being read again (ctime cannot be set back by
a user, and ``chattr`` moves it too, so a change always shows there); everything else is
read once for md5, sha1 and sha256 together. Symbolic links are reported as links (their
target), never followed. Files that vanish or cannot be read during the walk are skipped
or reported without hashes, never a crash. Every field is one of the fim index's
(:mod:`bus.indices`).
"""

from __future__ import annotations

import fcntl
import fnmatch
import grp
import hashlib
import os
import pwd
import stat
import struct
import threading
from collections.abc import Iterator
from typing import Any

from collectors.isotime import iso_utc_ns
from collectors.state import Item, Stored

#: read size while hashing
HASH_CHUNK = 1024 * 1024
#: the hashes of a file, all computed in one read
HASHES = ("md5", "sha1", "sha256")
#: ioctl FS_IOC_GETFLAGS (``lsattr``), and the inode flags worth reporting, by name
FS_IOC_GETFLAGS = 0x80086601
INODE_FLAGS = (
    (0x00000010, "immutable"),
    (0x00000020, "append_only"),
    (0x00000001, "secure_deletion"),
    (0x00000002, "undeletable"),
    (0x00000004, "compressed"),
    (0x00000008, "synchronous"),
    (0x00000040, "no_dump"),
    (0x00000080, "no_atime"),
    (0x00000800, "encrypted"),
)


class ScanInterrupted(Exception):
    """The service was asked to stop in the middle of a scan."""


def stamp_of(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def attributes_of(fd: int) -> list[str] | None:
    """The inode flags of an open file by name (None: the file system has none to tell)."""
    try:
        raw = fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 4)
    except OSError:
        return None
    flags = struct.unpack("i", raw)[0]
    return [name for bit, name in INODE_FLAGS if flags & bit]


class Scanner:
    """One walk over ``paths``; counts what it could not read in ``errors``."""

    def __init__(
        self,
        paths: list[str],
        exclude: list[str],
        max_file_bytes: int,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.paths = paths
        self.exclude = exclude
        self.max_file_bytes = max_file_bytes
        self.stop_event = stop_event or threading.Event()
        self.errors: dict[str, int] = {}
        #: directories the walk could not list: what we knew under them is kept as it was
        self.unreadable: list[str] = []
        self.hashed = 0
        self._users: dict[int, str] = {}
        self._groups: dict[int, str] = {}

    def scan(self, previous: dict[str, Stored]) -> dict[str, Item]:
        """Every watched file, keyed by path; raises :class:`ScanInterrupted` when stopping."""
        found: dict[str, Item] = {}
        for path in self._walk():
            if self.stop_event.is_set():
                raise ScanInterrupted()
            item = self.describe(path, previous.get(path))
            if item is not None:
                found[path] = item
        for directory in self.unreadable:
            prefix = directory.rstrip("/") + "/"
            for path, was in previous.items():
                if path.startswith(prefix) and path not in found:
                    found[path] = Item(was.data, was.extra)
        return found

    def watched_roots(self) -> list[str]:
        return [os.path.abspath(p) for p in self.paths]

    def _excluded(self, path: str) -> bool:
        return any(fnmatch.fnmatch(path, pat) for pat in self.exclude)

    def _walk(self) -> Iterator[str]:
        seen: set[str] = set()
        for root in self.watched_roots():
            if root in seen or self._excluded(root):
                continue
            seen.add(root)
            try:
                st = os.lstat(root)
            except OSError:
                self._error("missing")
                continue
            if not stat.S_ISDIR(st.st_mode):
                yield root  # a single file may be watched too
                continue
            for dirpath, dirnames, filenames in os.walk(root, onerror=self._walk_error):
                dirnames[:] = sorted(
                    d for d in dirnames if not self._excluded(os.path.join(dirpath, d))
                )
                for name in sorted(filenames):
                    full = os.path.join(dirpath, name)
                    if not self._excluded(full):
                        yield full

    def _walk_error(self, exc: OSError) -> None:
        self._error("unreadable_dir")
        if exc.filename:
            self.unreadable.append(str(exc.filename))

    def _error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1

    def describe(self, path: str, previous: Stored | None) -> Item | None:
        """The document of one file (None when it vanished or is not a file or link)."""
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            kind = "symlink"
        elif stat.S_ISREG(st.st_mode):
            kind = "file"
        else:
            return None  # sockets, fifos, devices: nothing to hash
        stamp = stamp_of(st)
        file: dict[str, Any] = {
            "path": path,
            "name": os.path.basename(path),
            "type": kind,
            "size": st.st_size,
            "mode": f"{stat.S_IMODE(st.st_mode):04o}",
            "uid": str(st.st_uid),
            "gid": str(st.st_gid),
            "owner": self._user(st.st_uid),
            "group": self._group(st.st_gid),
            "inode": str(st.st_ino),
            "mtime": iso_utc_ns(st.st_mtime_ns),
        }
        if kind == "symlink":
            try:
                file["target_path"] = os.readlink(path)
            except OSError:
                pass
        elif previous is not None and previous.extra == stamp and _complete(previous.data):
            was = previous.data["file"]
            file["hash"] = was["hash"]
            if was.get("attributes"):
                file["attributes"] = was["attributes"]
        else:
            too_large = st.st_size > self.max_file_bytes
            if too_large:
                self._error("too_large")
            attributes, hashes = self._read(path, hash_it=not too_large)
            if attributes:
                file["attributes"] = attributes
            if hashes is not None:
                file["hash"] = hashes
        return Item({"file": file}, stamp)

    def _read(self, path: str, *, hash_it: bool) -> tuple[list[str] | None, dict[str, str] | None]:
        """One open of a regular file: its inode flags and (``hash_it``) its hashes."""
        try:
            # O_NOFOLLOW: the path was a regular file a moment ago; never hash through a
            # link swapped in since. O_NONBLOCK: a fifo swapped in cannot hang the scan.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            self._error("unreadable_file")
            return None, None
        try:
            attributes = attributes_of(fd)
            if not hash_it:
                return attributes, None
            hashes = [hashlib.new(name, usedforsecurity=False) for name in HASHES]
            while chunk := os.read(fd, HASH_CHUNK):
                for h in hashes:
                    h.update(chunk)
                if self.stop_event.is_set():
                    raise ScanInterrupted()
        except OSError:
            self._error("unreadable_file")
            return None, None
        finally:
            os.close(fd)
        self.hashed += 1
        return attributes, {name: h.hexdigest() for name, h in zip(HASHES, hashes, strict=True)}

    def _user(self, uid: int) -> str:
        if uid not in self._users:
            try:
                self._users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self._users[uid] = ""
        return self._users[uid]

    def _group(self, gid: int) -> str:
        if gid not in self._groups:
            try:
                self._groups[gid] = grp.getgrgid(gid).gr_name
            except KeyError:
                self._groups[gid] = ""
        return self._groups[gid]


def _complete(data: dict[str, Any]) -> bool:
    """Whether a stored document has every hash (an older state may have sha256 only)."""
    hashes = data.get("file", {}).get("hash") or {}
    return all(name in hashes for name in HASHES)
