"""``--stateful-chunk N``: read stateful bodies the way the 6.0.0 comms API does, per chunk.

The real stateful handler iterates ``request.stream()`` and splits **each received chunk**
into lines on its own (docs/protocol.md, Events): a chunk with fewer than 2 lines is
refused with 400 (error 2709's words), empty parts are skipped, and a line cut across two
chunks reaches the parser as two broken lines, so the request is refused or misread. The
client does not choose the chunks: over TLS one record carries at most 16 KiB, and the
request line and headers share the first one.

:class:`PieceReader` reproduces that deterministically: it cuts the request at fixed
N-byte offsets counted from the start of the request (the request line and headers, as
:func:`head_size` rebuilds them, fill the start of the first piece) and hands each body
piece's lines to a :class:`~refserver.ndjson.BodyParser`. Our own rules stay on: a body
with a genuinely empty line or a trailing newline is still refused (empty parts made by
a cut at a line's end are skipped, as the real server skips them).
"""

from __future__ import annotations

from refserver.errors import INVALID_STATEFUL_MESSAGE, HTTPError
from refserver.ndjson import BodyParser

NEWLINE = 0x0A


def head_size(method: str, target: str, headers: list[tuple[bytes, bytes]]) -> int:
    """Bytes of ``<method> <target> HTTP/1.1\\r\\n``, each ``name: value\\r\\n``, and ``\\r\\n``."""
    line = len(f"{method} {target} HTTP/1.1\r\n".encode())
    return line + sum(len(name) + len(value) + 4 for name, value in headers) + 2


class PieceReader:
    """Feed the body as it streams in; each complete N-byte piece is parsed on its own."""

    def __init__(self, parser: BodyParser, size: int, head: int) -> None:
        self.parser = parser
        self.size = size
        self.head = head
        self.pieces = 0
        self._buffer = bytearray()
        self._room = size - head % size  # body bytes until the first cut
        self._offset = 0  # body offset of the buffer's first byte
        self._newlines = 0
        self._last: int | None = None

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        while len(self._buffer) >= self._room:
            piece = bytes(self._buffer[: self._room])
            del self._buffer[: self._room]
            self._piece(piece)
            self._room = self.size

    def finish(self) -> None:
        if self._buffer:
            self._piece(bytes(self._buffer))
            self._buffer.clear()
        if self._last is None:
            raise HTTPError(400, "body must contain the agent metadata, headers and events")
        if self._last == NEWLINE:
            raise _empty(self._newlines + 1)
        self.parser.end()

    def _piece(self, piece: bytes) -> None:
        self.pieces += 1
        start, self._offset = self._offset, self._offset + len(piece)
        self._check_framing(piece)
        parts = piece.splitlines()
        if len(parts) < 2:
            where = f"piece {self.pieces}, body bytes {start}-{self._offset - 1}"
            raise HTTPError(400, f"{INVALID_STATEFUL_MESSAGE} ({where}: {len(parts)} line)")
        for part in parts:
            if part:
                self.parser.line(part)

    def _check_framing(self, piece: bytes) -> None:
        """Refuse a genuinely empty line, wherever the cuts fall."""
        if piece[:1] == b"\n" and self._last in (None, NEWLINE):
            raise _empty(self._newlines + 1)
        at = piece.find(b"\n\n")
        if at >= 0:
            raise _empty(self._newlines + piece.count(b"\n", 0, at + 1) + 1)
        self._newlines += piece.count(b"\n")
        self._last = piece[-1]


def _empty(line: int) -> HTTPError:
    return HTTPError(400, f"line is empty (line {line})")
