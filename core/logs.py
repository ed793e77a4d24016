"""Logging with loguru: one stable prefix per service, optional rotated file, JSON lines.

``diagnose=False`` everywhere: loguru's diagnose mode prints local variables in
tracebacks, which would put credentials and tokens in the log. The log file (and every
rotated one) is 0600 whatever the umask: it names the host's files and the commands run.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import TYPE_CHECKING

from loguru import logger

from bus.threads import current_service
from core.config import LogSection
from core.private_dirs import FILE_MODE

if TYPE_CHECKING:
    from loguru import Record

FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level:<7} [{extra[service]}] {message}"


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
