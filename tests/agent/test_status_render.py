"""The status table shows every service that answered, collectors included."""

from __future__ import annotations

import time

from agent.status import render


def test_a_collector_gets_a_line_with_the_counters_that_moved():
    now = time.time()
    report = {
        "run_dir": "/run/agentbus",
        "summary": {"running": True, "healthy": False, "down": ["forwarder", "commander"]},
        "services": {
            "agent": {"up": False, "counters": {}},
            "forwarder": {"up": False, "counters": {}},
            "commander": {"up": False, "counters": {}},
            "fim": {
                "up": True,
                "counters": {
                    "started_at": now - 120,
                    "events_sent": 5,
                    "send_errors": 0,
                    "documents": {"fim": {"created": 3, "updated": 1}},
                    "errors": {},
                    "last_error": "cannot read /etc/shadow: permission denied",
                    "last_error_at": now - 5,
                },
            },
            "logcollector": {"up": False, "error": "no answer", "counters": {}},
        },
    }
    table = render(report)
    fim = next(line for line in table.splitlines() if line.startswith("fim"))
    assert "up" in fim and "events sent 5" in fim and "documents 4" in fim
    assert "send errors" not in fim  # only what moved
    assert "permission denied" in table
    assert any(line.startswith("logcollector") and "DOWN" in line for line in table.splitlines())
