"""Reading one file from a saved offset: complete lines only, long lines cut, state kept.

A :class:`FileTail` holds the file open, so a file renamed away by rotation is still read
to its end through the same descriptor. :meth:`FileTail.read` never moves the offset by
itself: it returns the lines and the position after each, and the caller commits a
position only once the forwarder has the lines before it.
"""

from __future__ import annotations

import os
import time
from typing import NamedTuple

from collectors.logcollector.offsets import FINGERPRINT_BYTES, OffsetRow, fingerprint, same_head

#: most bytes read from one file per step (one acknowledged batch at most)
READ_BYTES = 1024 * 1024


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
        cls, path: str, offset: int | None, *, skipping: bool = False, max_line_bytes: int
    ) -> FileTail:
        """Open ``path``; ``offset=None`` means "at its current end"."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
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
