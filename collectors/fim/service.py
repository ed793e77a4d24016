"""The fim service: scan the watched directories at an interval, report what changed.

Module ``fim``, collector ``file``; one document per file of the ``wazuh-states-fim``
index (no ``@timestamp``: that index has none), id ``sha1hex(agent_uuid + ":" + path)``.
The baseline is the stored state of the last committed scan; the very first scan reports
every file as ``create``.
"""

from __future__ import annotations

import argparse

from loguru import logger

from collectors import metrics as km
from collectors.fim.scan import ScanInterrupted, Scanner
from collectors.fim.settings import FimSettings
from collectors.stateful import StatefulCollectorService
from core.config import Config

COLLECTOR = "file"


class FimService(StatefulCollectorService):
    """Scans ``[collectors.fim] paths`` every ``interval``."""

    name = "fim"
    declared = km.FIM
    module = "fim"

    def __init__(self, config: Config, args: argparse.Namespace | None = None) -> None:
        super().__init__(config, args)
        self.settings: FimSettings = config.collectors.fim

    def scan(self) -> None:
        assert self.state is not None
        scanner = Scanner(
            self.settings.paths,
            self.settings.exclude,
            self.settings.max_file_bytes,
            stop_event=self.stop_event,
        )
        previous = self.state.items(COLLECTOR)
        try:
            current = scanner.scan(previous)
        except ScanInterrupted:
            logger.info("fim scan interrupted by stop; nothing reported for it")
            return
        for reason, n in scanner.errors.items():
            self.metrics.inc(km.ERRORS, n, reason=reason)
        self.metrics.inc(km.FILES_HASHED, scanner.hashed)
        self.metrics.set(km.FILES, len(current))
        self.sync(COLLECTOR, current, previous=previous)
