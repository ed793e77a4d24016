"""The ``scan`` admin control command: a scanning collector (here sca) with a long interval
scans again at once when asked on its admin socket, and its changed document reaches the
reference server; the status socket refuses it; asked during a scan, exactly one more
scan follows (never a queue of them); ``agentbus scan SERVICE`` sends it."""

from __future__ import annotations

import argparse
import threading
from typing import Any

import pytest

from agent.cli import scan as scan_cli
from bus.control import request
from collectors import metrics as km
from collectors.metrics import SCAN_REQUESTS
from collectors.sca.service import ScaService
from collectors.stateful import StatefulCollectorService
from core.service import endpoints_from_config
from tests.fixtures.collectors import write_credentials
from tests.fixtures.common import wait_for, write_config


def _results(sink: Any) -> list[str]:
    return [d["data"]["check"]["result"] for d in sink.server.documents("wazuh-states-sca")]


@pytest.mark.timeout(90)
def test_scan_on_the_admin_socket_assesses_again_without_waiting_for_the_interval(
    make_config, sink, run_service, sca_host, tmp_path, capsys
):
    config = make_config(
        {
            "collectors": {
                "sca": {
                    "builtin_policies": False,
                    "policy_dirs": [],
                    "policies": [str(sca_host / "policy.yml")],
                    "interval": "1h",  # the interval alone would not scan again in this test
                }
            }
        }
    )
    write_credentials(config)
    svc = run_service(ScaService(config))
    metrics = svc.service.metrics
    wait_for(lambda: metrics.get(km.SCANS) == 1, timeout=30)
    wait_for(lambda: _results(sink) == ["passed"], timeout=30)
    endpoints = endpoints_from_config(config)

    # The status socket (the agent's group) may not make it scan: refused and counted.
    refused = request(endpoints.control("sca"), {"cmd": "scan"})
    assert refused["ok"] is False and "admin socket" in refused["error"]
    status = request(endpoints.control("sca"), {"cmd": "status"})
    assert status["control_rejected"] == {"admin_only": 1}
    assert metrics.get(km.SCANS) == 1

    # The check's state changes on disk; the admin socket asks for a scan now.
    (sca_host / "app.conf").write_text("debug = on\n")
    assert request(endpoints.admin("sca"), {"cmd": "scan"}) == {"ok": True, "scan": "started"}
    wait_for(lambda: metrics.get(km.SCANS) == 2, timeout=30)
    wait_for(lambda: _results(sink) == ["failed"], timeout=30)
    assert metrics.get(km.DOCUMENTS, collector="check", change="updated") == 1
    assert metrics.get(SCAN_REQUESTS, outcome="started") == 1

    # The operator's command: the same request, through the CLI module.
    (sca_host / "app.conf").write_text("debug = off\n")
    args = argparse.Namespace(
        config=str(write_config(config, tmp_path / "agent.toml")), service="sca", json=False
    )
    assert scan_cli.run(args) == 0
    assert capsys.readouterr().out == "sca: scan started\n"
    wait_for(lambda: metrics.get(km.SCANS) == 3, timeout=30)
    wait_for(lambda: _results(sink) == ["passed"], timeout=30)
    status = request(endpoints.control("sca"), {"cmd": "status"})
    assert status["scan_requests"] == {"started": 2}
    assert svc.stop() == 0


class _HeldScan(StatefulCollectorService):
    """A scanning collector whose scan waits until the test lets it end (real sockets)."""

    name = "held"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.release = threading.Event()
        self.entered = 0

    @property
    def interval(self) -> float:
        return 3600.0

    def scan(self) -> None:
        self.entered += 1
        self.release.wait(30)


@pytest.mark.timeout(60)
def test_scans_asked_for_during_a_scan_make_exactly_one_more(make_config, run_service):
    config = make_config()
    write_credentials(config)
    svc = _HeldScan(config)
    thread = run_service(svc)
    wait_for(lambda: svc.entered == 1)
    admin = endpoints_from_config(config).admin("held")

    for _ in range(3):
        assert request(admin, {"cmd": "scan"}) == {"ok": True, "scan": "queued"}
    svc.release.set()
    wait_for(lambda: svc.scans == 2)
    # The second scan took every request made before it: nothing is left to wake the loop.
    assert not svc._wake.is_set()
    assert svc.entered == 2
    assert svc.metrics.get(SCAN_REQUESTS, outcome="queued") == 3

    # Idle again: the next request starts one at once.
    assert request(admin, {"cmd": "scan"}) == {"ok": True, "scan": "started"}
    wait_for(lambda: svc.scans == 3)
    assert thread.stop() == 0


def test_the_cli_says_when_the_service_is_not_running(make_config, tmp_path, capsys):
    config = make_config()
    args = argparse.Namespace(
        config=str(write_config(config, tmp_path / "agent.toml")), service="fim", json=False
    )
    assert scan_cli.run(args) == 1
    assert "fim is not running" in capsys.readouterr().err
