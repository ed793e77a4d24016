"""Logging with loguru: one stable prefix per service, optional rotated file, JSON lines.

``diagnose=False`` everywhere: loguru's diagnose mode prints local variables in
tracebacks, which would put credentials and tokens in the log. The log file (and every
rotated one) is 0600 whatever the umask: it names the host's files and the commands run.

Every process also keeps the last :data:`RING_LINES` lines of each service in memory
(:func:`recent_lines`), which the service serves on its status socket (the ``logs``
control command) for ``agentbus diagnostics``: by default the log goes to stderr or the
journal, where the agent cannot read it back.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from loguru import logger

from bus.threads import current_service
from core.config import LogSection
from core.private_dirs import FILE_MODE

if TYPE_CHECKING:
    from loguru import Message, Record

FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level:<7} [{extra[service]}] {message}"
#: lines of each service kept in memory, and the longest line kept whole (characters)
RING_LINES = 500
RING_LINE_CHARS = 2000
#: services a process keeps lines of (a process hosts a dozen at most)
RING_SERVICES = 64


class LogRing:
    """The last ``lines`` log lines of each service, in memory: a loguru sink.

    Bounded in every way: lines per service, characters per line, services. A line is kept
    as the stderr sink writes it (the logs hold no key, token or password).
    """

    def __init__(self, lines: int = RING_LINES) -> None:
        self.lines = lines
        self._lock = threading.Lock()
        self._rings: dict[str, deque[str]] = {}

    def write(self, message: Message) -> None:
        service = str(message.record["extra"].get("service", "?"))
        text = str(message).rstrip("\n")
        if len(text) > RING_LINE_CHARS:
            text = text[:RING_LINE_CHARS] + f" ... ({len(text) - RING_LINE_CHARS} more)"
        with self._lock:
            ring = self._rings.get(service)
            if ring is None:
                if len(self._rings) >= RING_SERVICES:
                    return
                ring = self._rings[service] = deque(maxlen=self.lines)
            ring.append(text)

    def recent(self, service: str, n: int) -> list[str]:
        """The last ``n`` lines of ``service`` (oldest first)."""
        with self._lock:
            ring = self._rings.get(service)
            return list(ring)[-n:] if ring and n > 0 else []

    def clear(self) -> None:
        with self._lock:
            self._rings.clear()


#: this process's ring (every setup_logging() routes into it)
RING = LogRing()


def recent_lines(service: str, n: int = RING_LINES) -> list[str]:
    """The last ``n`` log lines of ``service`` in this process (oldest first)."""
    return RING.recent(service, min(n, RING_LINES))


def setup_logging(section: LogSection, service: str) -> None:
    """Route every log line to stderr (and the configured file) with ``[service]`` prefix.

    ``service`` is the process's name; a line logged by a thread that works for another
    service (bus/threads.py: the agent's services as threads of one process) carries that
    service's name instead.
    """
    logger.remove()
    logger.configure(extra={"service": service}, patcher=_service_of_thread)
    # Write to whatever sys.stderr is at the time of the call, not the object of today: a
    # swapped or closed stream (pytest capture, a daemonising parent) must not break logging.
    logger.add(_to_stderr, level=section.level, format=FORMAT, diagnose=False, backtrace=False)
    logger.add(RING.write, level=section.level, format=FORMAT, diagnose=False, backtrace=False)
    if section.file:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(section.file, FILE_MODE)  # a file left by an earlier run, maybe 0644
        logger.add(
            section.file,
            level=section.level,
            format=FORMAT,
            serialize=section.json,
            rotation=section.rotation,
            retention=f"{section.retention_days} days",
            diagnose=False,
            backtrace=False,
            enqueue=False,
            opener=_private_opener,
        )


def _private_opener(path: str, flags: int) -> int:
    """``open()``'s opener for the log file: created 0600, not with the umask's mode."""
    return os.open(path, flags | os.O_CLOEXEC, FILE_MODE)


def _service_of_thread(record: Record) -> None:
    owner = current_service()
    if owner is not None:
        record["extra"]["service"] = owner


def _to_stderr(message: str) -> None:
    # What this process printed on stdout before this line comes first: when both go to
    # one pipe or file (a script, `cmd > log 2>&1`), a buffered stdout line would otherwise
    # land after log lines written later, or in the middle of the next command's output.
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    sys.stderr.write(message)


class RateLimitedLog:
    """Lets at most ``per_minute`` lines through per key; counts what it held back.

    Used for bad input from local clients: a flood of garbage must not flood the log.
    """

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._window: dict[str, tuple[float, int, int]] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            start, shown, held = self._window.get(key, (now, 0, 0))
            if now - start >= 60:
                if held:
                    logger.warning(
                        "{} more '{}' messages were not logged in the last minute", held, key
                    )
                start, shown, held = now, 0, 0
            if shown < self.per_minute:
                self._window[key] = (start, shown + 1, held)
                logger.warning(message, *args)
            else:
                self._window[key] = (start, shown, held + 1)
