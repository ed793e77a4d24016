"""``[collectors.fim]``: file integrity monitoring's configuration section.

Declared here, next to the collector; :mod:`core.config` finds it through the service
registry (:mod:`core.registry`) and checks it like every other section.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.config import Bytes, Seconds


@dataclass(frozen=True, kw_only=True)
class FimSettings:
    enabled: bool = True
    #: directories to watch
    paths: list[str] = field(default_factory=lambda: ["/etc", "/usr/bin", "/usr/sbin"])
    exclude: list[str] = field(default_factory=list)
    #: time between scans
    interval: Seconds = 43200.0
    #: files larger than this are reported without a hash
    max_file_bytes: Bytes = 1024 * 1024 * 1024
    #: every document is sent again (as an update) this often; 0 = never
    resync_interval: Seconds = 86400.0
