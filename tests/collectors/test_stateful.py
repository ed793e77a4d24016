"""What the stateful collectors send over time: @timestamp, nulls, reset, periodic resync.

The collectors run once per scan (``--once``, a new service each time, as after a
restart) on a real SQLite state, against a stub forwarder that records every event.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from bus.indices import index_for
from collectors import metrics as km
from collectors.fim.service import FimService
from collectors.inventory.service import InventoryService
from collectors.isotime import iso_utc
from collectors.state import Change, Item, StateStore, vanished, with_nulls
from collectors.stateful import StatefulCollectorService
from tests.fixtures.collectors import StubIngest, write_credentials

ONCE = argparse.Namespace(once=True)
#: a fixed "now" for the services' clock: 2026-12-02T10:00:00Z
T0 = 1796205600.0
OTHER_UUID = "9f2c8d3e-61a4-4b0e-9d8f-2a7c5e1b3f40"


def _package(name: str, version: str, description: str | None = "a tool") -> str:
    text = (
        f"Package: {name}\nStatus: install ok installed\nInstalled-Size: 12\n"
        f"Architecture: amd64\nVersion: {version}\n"
    )
    return text + (f"Description: {description}\n" if description is not None else "")


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


@pytest.fixture
def scan_once(
    stub_ingest: StubIngest, run_service: Callable[..., Any]
) -> Callable[..., list[dict[str, Any]]]:
    """``scan_once(service, at=T)``: one scan with the clock at ``at``; the events it sent."""

    def scan(service: StatefulCollectorService, at: float = T0) -> list[dict[str, Any]]:
        service.clock = lambda: at
        before = stub_ingest.count()
        thread = run_service(service)
        assert thread.join(60) == 0
        return stub_ingest.snapshot()[before:]

    return scan


@pytest.fixture
def status_file(tmp_path: Path) -> Path:
    path = tmp_path / "dpkg-status"
    path.write_text("\n".join([_package("alpha", "1.0"), _package("beta", "2.0")]))
    return path


def _inventory_config(make_config: Callable[..., Any], status: Path, **extra: Any) -> Any:
    settings = {"collectors": ["packages"], "dpkg_status": str(status), **extra}
    return make_config({"collectors": {"inventory": settings}})


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="INFO")
    yield lines
    logger.remove(sink)


# -- @timestamp -----------------------------------------------------------------------
def test_timestamp_is_the_time_of_the_change_and_causes_no_resend(
    make_config, scan_once, status_file
):
    config = _inventory_config(
        make_config, status_file, collectors=["system", "hardware", "packages"]
    )
    write_credentials(config)
    first = scan_once(InventoryService(config, ONCE), at=T0)
    assert {e["collector"] for e in first} == {"system", "hardware", "packages"}
    assert all(e["data"]["@timestamp"] == "2026-12-02T10:00:00.000Z" for e in first)

    # A later scan of the same host: new @timestamp, new free memory; nothing is sent.
    assert scan_once(InventoryService(config, ONCE), at=T0 + 60) == []

    status_file.write_text("\n".join([_package("alpha", "1.1"), _package("beta", "2.0")]))
    third = scan_once(InventoryService(config, ONCE), at=T0 + 120)
    assert [(e["operation"], e["data"]["package"]["name"]) for e in third] == [("update", "alpha")]
    assert third[0]["data"]["@timestamp"] == iso_utc(T0 + 120)


def test_fim_documents_have_no_timestamp(make_config, scan_once, tmp_path):
    watched = tmp_path / "w"
    watched.mkdir()
    (watched / "f").write_text("x\n")
    config = make_config({"collectors": {"fim": {"paths": [str(watched)]}}})
    write_credentials(config)
    (event,) = scan_once(FimService(config, ONCE))
    assert "@timestamp" not in event["data"] and event["data"]["file"]["path"] == str(watched / "f")


# -- nulls on update ------------------------------------------------------------------
def test_an_update_sets_fields_that_disappeared_to_null(make_config, scan_once, status_file):
    config = _inventory_config(make_config, status_file)
    write_credentials(config)
    first = {e["data"]["package"]["name"]: e for e in scan_once(InventoryService(config, ONCE))}
    assert first["alpha"]["data"]["package"]["description"] == "a tool"

    # alpha loses its description (and its size) and is upgraded
    status_file.write_text(
        "\n".join(
            [
                _package("alpha", "1.1", description=None).replace("Installed-Size: 12\n", ""),
                _package("beta", "2.0"),
            ]
        )
    )
    (update,) = scan_once(InventoryService(config, ONCE), at=T0 + 10)
    assert update["operation"] == "update" and update["id"] == first["alpha"]["id"]
    package = update["data"]["package"]
    assert package["description"] is None and package["size"] is None
    assert package["version"] == "1.1" and package["name"] == "alpha"

    # What was stored is the host's view (no nulls): the next scan sends nothing, and a
    # description that comes back is an update again.
    assert scan_once(InventoryService(config, ONCE), at=T0 + 20) == []
    status_file.write_text("\n".join([_package("alpha", "1.1"), _package("beta", "2.0")]))
    (back,) = scan_once(InventoryService(config, ONCE), at=T0 + 30)
    assert back["data"]["package"]["description"] == "a tool"
    assert back["data"]["package"]["size"] == 12 * 1024


def test_nested_nulls_and_only_for_fields_the_index_has(tmp_path):
    old = {
        "process": {"pid": 1, "tty": {"char_device": {"major": 136}}, "args": ["a"]},
        "legacy": {"field": 1},  # from an older document shape: the index has no such field
    }
    new = {"process": {"pid": 1}}
    assert sorted(vanished(old, new)) == [
        "legacy.field",
        "process.args",
        "process.tty.char_device.major",
    ]
    assert with_nulls(new, ["process.tty.char_device.major"]) == {
        "process": {"pid": 1, "tty": {"char_device": {"major": None}}}
    }
    index = index_for("inventory", "processes")
    assert index is not None
    store = StateStore(tmp_path / "state.db")
    try:
        store.apply([Change("create", "processes", "k", "id1", old, "d0")])
        (change,) = store.diff(
            "processes",
            {"k": Item(new)},
            lambda key: key,
            timestamp="2026-12-02T10:00:00.000Z",
            nullable=index.fields.keys(),
        )
    finally:
        store.close()
    assert change.operation == "update"
    assert change.data == {**new, "@timestamp": "2026-12-02T10:00:00.000Z"}
    assert change.wire == {
        "process": {"pid": 1, "tty": {"char_device": {"major": None}}, "args": None},
        "@timestamp": "2026-12-02T10:00:00.000Z",
    }


# -- reset on re-enrollment -------------------------------------------------------------
def test_a_new_agent_uuid_starts_from_empty(make_config, scan_once, status_file, log_lines):
    config = _inventory_config(make_config, status_file)
    first_uuid = write_credentials(config)
    first = scan_once(InventoryService(config, ONCE))
    assert sorted(e["id"] for e in first) == sorted(
        _sha1(f"{first_uuid}:deb:{n}:amd64") for n in ("alpha", "beta")
    )
    assert scan_once(InventoryService(config, ONCE)) == []

    write_credentials(config, OTHER_UUID, replace=True)  # agentbus register --force
    service = InventoryService(config, ONCE)
    again = scan_once(service)
    assert sorted((e["operation"], e["id"]) for e in again) == sorted(
        ("create", _sha1(f"{OTHER_UUID}:deb:{n}:amd64")) for n in ("alpha", "beta")
    )
    assert service.metrics.get(km.STATE_RESETS) == 1
    resets = [line for line in log_lines if "agent uuid changed" in line]
    assert len(resets) == 1 and first_uuid in resets[0] and OTHER_UUID in resets[0]
    # From then on the new agent's state is the baseline.
    assert scan_once(InventoryService(config, ONCE)) == []


def test_an_older_state_of_another_uuid_is_reset(make_config, scan_once, status_file):
    """A state file written before the uuid was remembered: its document ids tell."""
    config = _inventory_config(make_config, status_file)
    write_credentials(config)
    state_dir = config.data_dir / "collectors"
    state_dir.mkdir(parents=True)
    store = StateStore(state_dir / "inventory.db")
    key = "deb:alpha:amd64"
    store.apply(
        [Change("create", "packages", key, _sha1(f"{OTHER_UUID}:{key}"), {"package": {}}, "x")]
    )
    store.close()
    events = scan_once(InventoryService(config, ONCE))
    assert sorted(e["operation"] for e in events) == ["create", "create"]


# -- periodic full resync ---------------------------------------------------------------
def test_resync_sends_every_document_again_after_the_interval(
    make_config, scan_once, status_file, log_lines
):
    config = _inventory_config(
        make_config, status_file, collectors=["hardware", "packages"], resync_interval="1h"
    )
    write_credentials(config)
    first = scan_once(InventoryService(config, ONCE), at=T0)
    assert len(first) == 3 and {e["operation"] for e in first} == {"create"}

    # Before the interval (each scan a new process: the schedule is persisted)
    assert scan_once(InventoryService(config, ONCE), at=T0 + 1800) == []
    assert scan_once(InventoryService(config, ONCE), at=T0 + 3599) == []

    service = InventoryService(config, ONCE)
    resync = scan_once(service, at=T0 + 3600)
    assert sorted((e["operation"], e["id"]) for e in resync) == sorted(
        ("update", e["id"]) for e in first
    )
    # Whole documents, as last reported (the time of their last change included)
    by_id = {e["id"]: e["data"] for e in first}
    assert all(e["data"] == by_id[e["id"]] for e in resync)
    assert service.metrics.get(km.RESYNCS) == 2  # hardware and packages
    assert service.metrics.get(km.DOCUMENTS, collector="packages", change="resent") == 2
    assert len([line for line in log_lines if "full resync" in line]) == 2

    # Done: the next one is an interval later again
    assert scan_once(InventoryService(config, ONCE), at=T0 + 3700) == []
    assert len(scan_once(InventoryService(config, ONCE), at=T0 + 7200)) == 3


def test_a_resync_carries_real_changes_as_usual(make_config, scan_once, status_file):
    config = _inventory_config(make_config, status_file, resync_interval="1h")
    write_credentials(config)
    scan_once(InventoryService(config, ONCE), at=T0)
    status_file.write_text(_package("alpha", "1.1"))  # beta removed, alpha upgraded
    events = scan_once(InventoryService(config, ONCE), at=T0 + 4000)
    ops = sorted(
        (e["operation"], e.get("data", {}).get("package", {}).get("version")) for e in events
    )
    assert ops == [("delete", None), ("update", "1.1")]


def test_resync_interval_zero_never_resends(make_config, scan_once, status_file):
    config = _inventory_config(make_config, status_file, resync_interval=0)
    write_credentials(config)
    assert len(scan_once(InventoryService(config, ONCE), at=T0)) == 2
    assert scan_once(InventoryService(config, ONCE), at=T0 + 10 * 86400) == []


def test_fim_resyncs_too(make_config, scan_once, tmp_path):
    watched = tmp_path / "w"
    watched.mkdir()
    (watched / "f").write_text("x\n")
    config = make_config(
        {"collectors": {"fim": {"paths": [str(watched)], "resync_interval": "1d"}}}
    )
    write_credentials(config)
    (created,) = scan_once(FimService(config, ONCE), at=T0)
    assert scan_once(FimService(config, ONCE), at=T0 + 3600) == []
    (resent,) = scan_once(FimService(config, ONCE), at=T0 + 86400)
    assert resent["operation"] == "update" and resent["data"] == created["data"]
