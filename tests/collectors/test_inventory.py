"""inventory: real host data, only differences between scans, deletes of what disappeared."""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

from collectors import metrics as km
from collectors.inventory.packages import parse_dpkg_status
from collectors.inventory.service import InventoryService
from tests.fixtures.collectors import write_credentials
from tests.fixtures.common import wait_for

ONCE = argparse.Namespace(once=True)


def _package(
    name: str, version: str, arch: str = "amd64", status: str = "install ok installed"
) -> str:
    return (
        f"Package: {name}\nStatus: {status}\nPriority: optional\nSection: utils\n"
        f"Installed-Size: 12\nMaintainer: Someone <s@example.org>\nArchitecture: {arch}\n"
        f"Version: {version}\nDescription: the {name} tool\n more text on a continuation line\n"
    )


def _write_status(path: Path, packages: list[str]) -> None:
    path.write_text("\n".join(packages))


def _scan(run_service: Any, config: Any, sink: Any) -> list[dict[str, Any]]:
    before = len(sink.snapshot())
    svc = run_service(InventoryService(config, ONCE))
    assert svc.join(60) == 0
    # Committed by the forwarder once the scan returns; at the server a moment later.
    sent = svc.service.metrics.get(km.EVENTS_SENT)
    wait_for(lambda: len(sink.snapshot()) >= before + sent)
    return sink.snapshot()[before:]


def _by(events: list[dict[str, Any]], collector: str) -> list[dict[str, Any]]:
    return [e for e in events if e["collector"] == collector]


def test_sends_only_differences_and_deletes(make_config, sink, run_service, tmp_path):
    status = tmp_path / "dpkg-status"
    _write_status(
        status, [_package("alpha", "1.0"), _package("beta", "2.0"), _package("gamma", "3.0")]
    )
    config = make_config(
        {
            "collectors": {
                "inventory": {
                    "collectors": [
                        "system",
                        "hardware",
                        "packages",
                        "processes",
                        "networks",
                        "ports",
                    ],
                    "dpkg_status": str(status),
                }
            }
        }
    )
    uuid = write_credentials(config)

    first = _scan(run_service, config, sink)
    assert {e["collector"] for e in first} >= {
        "system",
        "hardware",
        "packages",
        "processes",
        "networks",
    }
    assert all(e["type"] == "stateful" and e["module"] == "inventory" for e in first)
    assert all(e["operation"] == "create" for e in first)
    pkgs = {e["data"]["package"]["name"]: e for e in _by(first, "packages")}
    assert set(pkgs) == {"alpha", "beta", "gamma"}
    assert pkgs["alpha"]["id"] == hashlib.sha1(f"{uuid}:deb:alpha:amd64".encode()).hexdigest()
    assert pkgs["alpha"]["data"]["package"]["version"] == "1.0"
    (system,) = _by(first, "system")
    assert system["data"]["host"]["os"]["type"] == "linux"

    # Between the scans: one upgrade, one removal, one install, and a new process.
    _write_status(
        status, [_package("alpha", "1.1"), _package("gamma", "3.0"), _package("delta", "0.1")]
    )
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        second = _scan(run_service, config, sink)
        pkg_ops = sorted((e["operation"], e["id"]) for e in _by(second, "packages"))
        assert pkg_ops == sorted(
            [
                ("update", pkgs["alpha"]["id"]),
                ("delete", pkgs["beta"]["id"]),
                ("create", hashlib.sha1(f"{uuid}:deb:delta:amd64".encode()).hexdigest()),
            ]
        )
        # The server's packages index now holds exactly what is installed, alpha upgraded.
        docs = sink.server.documents("wazuh-states-inventory-packages")
        versions = {d["data"]["package"]["name"]: d["data"]["package"]["version"] for d in docs}
        assert versions == {"alpha": "1.1", "gamma": "3.0", "delta": "0.1"}
        delete = next(
            e for e in second if e["operation"] == "delete" and e["collector"] == "packages"
        )
        assert "data" not in delete
        # Unchanged documents are not sent again (free memory changes, but is left out).
        assert _by(second, "system") == [] and _by(second, "hardware") == []
        assert _by(second, "networks") == []
        created = [
            e
            for e in _by(second, "processes")
            if e["operation"] == "create" and e["data"]["process"]["pid"] == sleeper.pid
        ]
        assert len(created) == 1
        assert created[0]["data"]["process"]["parent"]["pid"] > 0
        sleeper_id = created[0]["id"]
        # Our own, long-lived process was not reported again.
        assert not [
            e
            for e in _by(second, "processes")
            if e["operation"] == "update" and e["data"]["process"]["pid"] == _own_pid()
        ]
    finally:
        sleeper.kill()
        sleeper.wait()

    third = _scan(run_service, config, sink)
    assert ("delete", sleeper_id) in [(e["operation"], e["id"]) for e in _by(third, "processes")]
    assert _by(third, "packages") == []


def _own_pid() -> int:
    import os

    return os.getpid()


def test_a_failing_source_is_not_mistaken_for_deletions(make_config, sink, run_service, tmp_path):
    status = tmp_path / "dpkg-status"
    _write_status(status, [_package("alpha", "1.0")])
    config = make_config(
        {"collectors": {"inventory": {"collectors": ["packages"], "dpkg_status": str(status)}}}
    )
    write_credentials(config)
    assert len(_scan(run_service, config, sink)) == 1
    status.unlink()  # the package database is unreadable this time (no rpm here either)
    svc_events = _scan(run_service, config, sink)
    assert svc_events == []


def test_dpkg_status_parsing_keeps_installed_packages_only():
    text = "\n".join(
        [
            _package("kept", "1", arch="all"),
            _package("removed", "1", status="deinstall ok config-files"),
        ]
    )
    items = parse_dpkg_status(text)
    assert list(items) == ["deb:kept:all"]
    pkg = items["deb:kept:all"].data["package"]
    assert pkg["size"] == 12 * 1024 and pkg["description"] == "the kept tool"


def test_not_enrolled_is_a_clear_error(make_config, run_dir):
    config = make_config({})
    rc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.main",
            "inventory",
            "--config",
            _toml(config, run_dir),
            "--once",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert rc.returncode == 2
    assert "register" in rc.stderr


def _toml(config: Any, run_dir: Path) -> str:
    path = run_dir / "agentbus.toml"
    path.write_text(
        f'[agent]\ndata_dir = "{config.agent.data_dir}"\nrun_dir = "{config.agent.run_dir}"\n'
    )
    return str(path)


def test_the_servers_document_loses_a_field_the_host_lost(make_config, sink, run_service, tmp_path):
    """An update is a partial merge: the field that disappeared goes as null, and the
    server's document no longer has its old value."""
    status = tmp_path / "dpkg-status"
    _write_status(status, [_package("alpha", "1.0")])
    config = make_config(
        {"collectors": {"inventory": {"collectors": ["packages"], "dpkg_status": str(status)}}}
    )
    write_credentials(config)
    (created,) = _scan(run_service, config, sink)
    assert created["data"]["package"]["description"] == "the alpha tool"
    _write_status(status, [_package("alpha", "1.1").replace("Description:", "X-Description:")])
    (updated,) = _scan(run_service, config, sink)
    assert updated["operation"] == "update" and updated["data"]["package"]["description"] is None
    (doc,) = sink.server.documents("wazuh-states-inventory-packages")
    assert doc["data"]["package"]["version"] == "1.1"
    assert doc["data"]["package"].get("description") is None
    assert doc["data"]["@timestamp"] == updated["data"]["@timestamp"]
