"""``[collectors.logcollector]``: the logcollector's configuration section.

Declared here, next to the collector; :mod:`core.config` finds it through the service
registry (:mod:`core.registry`) and checks it like every other section.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from core.config import Bytes, Seconds


@dataclass(frozen=True, kw_only=True)
class LogcollectorSettings:
    enabled: bool = True
    #: files and globs to tail
    paths: list[str] = field(default_factory=lambda: ["/var/log/syslog", "/var/log/auth.log"])
    #: globs of files never to read
    exclude: list[str] = field(default_factory=list)
    #: where to begin in a file seen for the first time: end (only new lines) or start
    read_from: Literal["start", "end"] = "end"
    #: longer lines are cut here and flagged
    max_line_bytes: Bytes = 64 * 1024
    #: how often files and globs are checked
    poll_interval: Seconds = 0.5
    #: a rotated file is closed once it has not grown for this long (its last line sent)
    rotate_wait: Seconds = 5.0
    #: read only files owned by one of these users or by the agent's own user; a file of
    #: anyone else (a link or copy a local user planted) is skipped and counted
    file_owners: list[str] = field(default_factory=lambda: ["root", "syslog"])
