"""The sca service: assess the configured policies at an interval, report what changed.

Module ``sca``, collector ``check``; one document per check of each policy whose
requirements hold (collectors.sca.documents), sent only when its result or content
changed, deleted when the check, its policy, or the policy's applicability went away.
A policy refused this time (invalid, or no longer trusted) keeps its documents as they
were: a policy being edited must not look like every check vanished. The first
assessment runs at start.
"""

from __future__ import annotations

import argparse

from loguru import logger

from collectors import metrics as km
from collectors.sca.assess import assess
from collectors.sca.documents import check_document, check_key
from collectors.sca.evaluate import Interrupted
from collectors.sca.settings import ScaSettings
from collectors.state import TIMESTAMP, Item
from collectors.stateful import StatefulCollectorService
from core.config import Config
from core.logs import RateLimitedLog

COLLECTOR = "check"


class ScaService(StatefulCollectorService):
    """Assesses ``[collectors.sca]`` policies every ``interval``."""

    name = "sca"
    declared = km.SCA
    module = "sca"

    def __init__(self, config: Config, args: argparse.Namespace | None = None) -> None:
        super().__init__(config, args)
        self.settings: ScaSettings = config.collectors.sca
        self._log = RateLimitedLog(10)

    def scan(self) -> None:
        assert self.state is not None
        try:
            assessment = assess(self.settings, stop_event=self.stop_event)
        except Interrupted:
            logger.info("sca assessment interrupted by stop; nothing reported for it")
            return
        current: dict[str, Item] = {}
        for result in assessment.results:
            for warning in result.policy.warnings:
                # what the policy holds that is ignored or read otherwise: loaded anyway
                self._log.warning(
                    f"{result.policy.path}:{warning}",
                    "sca policy {}: {}",
                    result.policy.path,
                    warning,
                )
            if not result.applicable:
                self.metrics.inc(km.POLICIES_SKIPPED, reason="not_applicable")
                logger.info("sca policy {} not evaluated: {}", result.policy.id, result.reason)
                continue
            for check, outcome in result.checks:
                doc = check_document(result.policy, check, outcome)
                current[check_key(result.policy, check)] = Item(doc, result.policy.path)
                self.metrics.inc(km.CHECKS, result=outcome.result.replace(" ", "_"))
            logger.info(
                "sca policy {}: score {}%, {} passed, {} failed, {} not applicable",
                result.policy.id,
                result.score if result.score is not None else "-",
                result.count("passed"),
                result.count("failed"),
                result.count("not applicable"),
            )
        previous = self.state.items(COLLECTOR)
        refused = {path for path, _ in assessment.refused}
        for path, reason in assessment.refused:
            self.metrics.inc(km.POLICIES_SKIPPED, reason="refused")
            self._log.warning(path, "sca policy refused: {}", reason)
        for key, was in previous.items():
            if was.extra in refused and key not in current:
                data = {k: v for k, v in was.data.items() if k != TIMESTAMP}
                current[key] = Item(data, was.extra)
        self.metrics.set(km.POLICIES, len(assessment.applicable))
        self.sync(COLLECTOR, current, previous=previous)
