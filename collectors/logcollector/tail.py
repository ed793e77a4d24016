"""Reading one file from a saved offset: complete lines only, long lines cut, state kept.

A :class:`FileTail` holds the file open, so a file renamed away by rotation is still read
to its end through the same descriptor. :meth:`FileTail.read` never moves the offset by
itself: it returns the lines and the position after each, and the caller commits a
position only once the forwarder has the lines before it.

The agent reads as root what a local user may have put in a log directory: a watched file
is opened without following a symbolic link (at its name, and at every directory below
the trusted one it was found in), without blocking on a FIFO, and is read only when the
descriptor is a regular file owned by an allowed user (:func:`open_watched`). Checking
the open descriptor, not the name, leaves no gap between the check and the read.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Collection
from typing import NamedTuple

from collectors.logcollector.offsets import FINGERPRINT_BYTES, OffsetRow, fingerprint, same_head

#: most bytes read from one file per step (one acknowledged batch at most)
READ_BYTES = 1024 * 1024

#: how every watched file is opened: never through a link, never waiting for a FIFO writer
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

#: why a file is not read
SYMLINK = "symlink"
NOT_REGULAR = "not_regular"
OWNER = "owner"


class Skipped(Exception):
    """A file the logcollector must not read; ``reason`` is SYMLINK, NOT_REGULAR or OWNER."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def check_watched(st: os.stat_result, owners: Collection[int]) -> None:
    """Raise :class:`Skipped` unless ``st`` is a regular file owned by one of ``owners``."""
    if stat.S_ISLNK(st.st_mode):
        raise Skipped(SYMLINK, "a symbolic link (never followed)")
    if not stat.S_ISREG(st.st_mode):
        raise Skipped(NOT_REGULAR, "not a regular file")
    if st.st_uid not in owners:
        raise Skipped(OWNER, f"owned by uid {st.st_uid}, not by one of file_owners")


def open_watched(
    path: str, owners: Collection[int], base: str | None = None
) -> tuple[int, os.stat_result]:
    """Open ``path`` for reading as the module docstring says; (fd, its fstat).

    ``base``: a directory the administrator named (the fixed part of a glob); every
    component of ``path`` below it is opened without following links, so a link to a
    directory planted there is refused too. Without ``base`` only the name itself is
    checked (a file named in the configuration: its directories are the admin's).
    Raises :class:`Skipped`, or OSError when it cannot be opened at all.
    """
    parts: list[str] = []
    if base is not None:
        rel = os.path.relpath(path, base)
        parts = rel.split(os.sep)
        if rel.startswith(os.pardir) or not all(parts):
            parts = []  # not beneath base after all: open it by its name
    try:
        if len(parts) > 1:
            fd = _open_beneath(base or "/", parts)
        else:
            fd = os.open(path, OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Skipped(SYMLINK, "a symbolic link (never followed)") from None
        raise
    try:
        st = os.fstat(fd)
        check_watched(st, owners)
        return fd, st
    except BaseException:
        os.close(fd)
        raise


def _open_beneath(base: str, parts: list[str]) -> int:
    dirfd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, _DIR_FLAGS, dir_fd=dirfd)
            except NotADirectoryError:
                # What Linux answers for a link opened with O_DIRECTORY | O_NOFOLLOW.
                raise Skipped(SYMLINK, f"{part!r} on its path is a symbolic link") from None
            os.close(dirfd)
            dirfd = inner
        return os.open(parts[-1], OPEN_FLAGS, dir_fd=dirfd)
    finally:
        os.close(dirfd)


#: One line as read: (start offset, bytes without the newline, cut at max_line_bytes,
#: offset to resume from after it, whether the rest of an over-long line is still to be
#: skipped). A plain tuple: a burst makes hundreds of thousands of them.
Line = tuple[int, bytes, bool, int, bool]


class FileTail:
    """An open file being followed, and the committed position in it."""

    def __init__(
        self,
        path: str,
        fd: int,
        st: os.stat_result,
        offset: int,
        *,
        skipping: bool = False,
        max_line_bytes: int,
    ) -> None:
        self.path = path
        self.fd = fd
        self.dev = st.st_dev
        self.ino = st.st_ino
        self.offset = offset
        self.skipping = skipping
        self.max_line_bytes = max(1, max_line_bytes)
        #: set when the path now names another file (rotation) or is gone
        self.retired = False
        #: monotonic time the file was last seen growing (rotated files close when quiet)
        self.last_active = time.monotonic()
        self.last_size = st.st_size
        self.head_len, self.head_sha1 = fingerprint(fd)

    @classmethod
    def open(
        cls,
        path: str,
        offset: int | None,
        *,
        skipping: bool = False,
        max_line_bytes: int,
        owners: Collection[int],
        source: str | None = None,
        base: str | None = None,
    ) -> FileTail:
        """Open ``source`` (default ``path``) with :func:`open_watched`, known as ``path``;
        ``offset=None`` means "at its current end". Raises :class:`Skipped` or OSError."""
        fd, st = open_watched(source or path, owners, base)
        try:
            start = st.st_size if offset is None else offset
            return cls(path, fd, st, start, skipping=skipping, max_line_bytes=max_line_bytes)
        except BaseException:
            os.close(fd)
            raise

    @property
    def key(self) -> tuple[int, int]:
        return (self.dev, self.ino)

    def row(self) -> OffsetRow:
        if self.head_len < FINGERPRINT_BYTES and same_head(self.fd, self.head_len, self.head_sha1):
            # The head was short when first seen: fingerprint more of it as it grows.
            self.head_len, self.head_sha1 = fingerprint(self.fd)
        return OffsetRow(
            self.dev, self.ino, self.path, self.offset, self.skipping, self.head_len, self.head_sha1
        )

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def links(self) -> int:
        return os.fstat(self.fd).st_nlink

    def rewritten(self) -> bool:
        """True when the file was truncated (copytruncate) or rewritten from the start.

        Logs only grow: a file now shorter than our offset, or whose first bytes differ
        from those fingerprinted, is a new content in the same inode.
        """
        return self.size() < self.offset or not same_head(self.fd, self.head_len, self.head_sha1)

    def reset(self) -> None:
        """Start over from the first byte (after copytruncate)."""
        self.offset = 0
        self.skipping = False
        self.head_len, self.head_sha1 = fingerprint(self.fd)

    def read(self, *, final: bool = False, limit: int = READ_BYTES) -> LinesRead:
        """Complete lines from the committed offset on (``final``: the last partial line too)."""
        limit = max(limit, 2 * self.max_line_bytes + 2)
        data = os.pread(self.fd, limit, self.offset)
        return split_lines(data, self.offset, self.skipping, self.max_line_bytes, final=final)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class LinesRead(NamedTuple):
    """What one read produced: lines, and the position (and skip state) after all of them."""

    lines: list[Line]
    end: int
    skipping: bool


def split_lines(
    data: bytes, base: int, skipping: bool, max_line: int, *, final: bool = False
) -> LinesRead:
    """Cut ``data`` (read at offset ``base``) into lines.

    A line longer than ``max_line`` bytes is cut there and flagged; the rest of it, up to
    its newline, is skipped — if the newline has not been written yet, the returned state
    says so (``skipping``) and the caller persists it, so a restart skips it too. A trailing
    ``\\r`` is dropped (CRLF files) and empty lines are skipped. Without ``final`` an
    unterminated last line is held back until its newline arrives.
    """
    lines: list[Line] = []
    pos = 0
    n = len(data)
    find = data.find
    while pos < n:
        nl = find(b"\n", pos)
        if nl < 0:
            break
        if skipping:  # the rest of a line already cut: nothing to emit
            skipping = False
            pos = nl + 1
            continue
        raw = data[pos:nl]
        if raw[-1:] == b"\r":
            raw = raw[:-1]
        if not raw:  # an empty line carries nothing: no event
            pos = nl + 1
            continue
        truncated = len(raw) > max_line
        if truncated:
            raw = raw[:max_line]
        lines.append((base + pos, raw, truncated, base + nl + 1, False))
        pos = nl + 1
    rest = n - pos
    if rest and skipping:
        pos = n  # still inside the over-long line
    elif rest > max_line:
        lines.append((base + pos, data[pos : pos + max_line], True, base + n, True))
        pos, skipping = n, True
    elif rest and final:
        raw = data[pos:]
        if raw[-1:] == b"\r":
            raw = raw[:-1]
        lines.append((base + pos, raw, False, base + n, False))
        pos = n
    return LinesRead(lines, base + pos, skipping)
