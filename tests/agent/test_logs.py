"""Logging: service prefix, JSON file, rate-limited warnings, no locals in tracebacks."""

from __future__ import annotations

import json

from loguru import logger

from core.config import LogSection
from core.logs import RateLimitedLog, setup_logging


def test_file_log_has_the_service_prefix_and_no_local_variables(tmp_path, capsys):
    path = tmp_path / "agent.log"
    setup_logging(LogSection(level="INFO", file=str(path)), "forwarder")
    try:
        secret_key = "s3cr3t-key-value"  # noqa: F841 - must not appear in the traceback
        raise ValueError("boom")
    except ValueError:
        logger.exception("sending failed")
    logger.remove()
    text = path.read_text()
    assert "[forwarder] sending failed" in text
    assert "ValueError: boom" in text
    assert "s3cr3t-key-value" not in text
    assert "s3cr3t-key-value" not in capsys.readouterr().err


def test_json_file_log(tmp_path):
    path = tmp_path / "agent.jsonl"
    setup_logging(LogSection(level="INFO", file=str(path), json=True), "commander")
    logger.info("polled {} times", 3)
    logger.remove()
    record = json.loads(path.read_text().splitlines()[-1])
    assert record["record"]["message"] == "polled 3 times"
    assert record["record"]["extra"]["service"] == "commander"


def test_rate_limited_log_lets_through_only_the_first_lines(tmp_path):
    path = tmp_path / "agent.log"
    setup_logging(LogSection(level="INFO", file=str(path)), "forwarder")
    limited = RateLimitedLog(per_minute=3)
    for i in range(50):
        limited.warning("not_msgpack", "rejected frame {}", i)
    limited.warning("too_large", "rejected big frame")
    logger.remove()
    lines = path.read_text().splitlines()
    assert [line.rsplit(" ", 1)[1] for line in lines if "rejected frame" in line] == ["0", "1", "2"]
    assert any("rejected big frame" in line for line in lines), "each reason has its own budget"
