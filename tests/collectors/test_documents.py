"""Every document the built-in collectors make fits its index's mapping (bus.indices).

The scanners run on this machine's real data (processes, dpkg's status file, interfaces,
sockets, a temp dir for fim); then the collectors run once through the real forwarder to
the reference server, which refuses what does not fit the mapping.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bus.indices import check_document, index_for, index_name
from collectors import metrics as km
from collectors.fim.scan import Scanner as FimScanner
from collectors.fim.service import FimService
from collectors.inventory.packages import make_package_scanner
from collectors.inventory.scanners import STABLE, scanners
from collectors.inventory.service import InventoryService
from collectors.isotime import iso_utc
from collectors.state import Item, digest_of
from tests.fixtures.common import wait_for

ONCE = argparse.Namespace(once=True)
DPKG_STATUS = "/var/lib/dpkg/status"
COLLECTORS = ["system", "hardware", "packages", "processes", "networks", "ports"]


def _problems(collector: str, items: dict[str, Item], *, stamp: bool = True) -> list[str]:
    module = "fim" if collector == "file" else "inventory"
    index = index_for(module, collector)
    assert index is not None
    out = []
    for key, item in items.items():
        data = {**item.data, "@timestamp": iso_utc(time.time())} if stamp else item.data
        problem = check_document(index, data)
        if problem is not None:
            out.append(f"{collector} {key}: {problem}")
    return out


@pytest.fixture
def tty_child() -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A process whose controlling terminal is a new pty: (process, the pty's major)."""
    master, slave = os.openpty()
    name = os.ttyname(slave)
    # After setsid, opening a terminal without O_NOCTTY makes it the controlling one.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys; os.open(sys.argv[1], os.O_RDWR); print('ready', flush=True);"
            " sys.stdin.read()",
            name,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        yield child, os.major(os.stat(name).st_rdev)
    finally:
        child.kill()
        child.communicate()
        os.close(master)
        os.close(slave)


def test_processes_fit_and_carry_ids_and_terminal(tty_child):
    child, major = tty_child
    items = scanners(DPKG_STATUS)["processes"]()
    assert _problems("processes", items) == []
    mine = [i.data["process"] for i in items.values() if i.data["process"]["pid"] == child.pid]
    assert len(mine) == 1
    process = mine[0]
    uid, gid = str(os.getuid()), str(os.getgid())
    assert process["user"] == process["real_user"] == process["saved_user"] == {"id": uid}
    assert process["group"] == process["real_group"] == process["saved_group"] == {"id": gid}
    assert process["thread"] == {"id": child.pid}
    assert process["tty"] == {"char_device": {"major": major}}
    assert process["parent"] == {"pid": os.getpid()}
    assert process["args"][0] == sys.executable and process["args"][1] == "-c"
    assert process["command_line"].startswith(f"{sys.executable} -c ")
    assert process["start"].endswith("Z") and "." in process["start"]


def test_packages_of_this_host_fit():
    if not Path(DPKG_STATUS).exists():
        pytest.fail(f"{DPKG_STATUS} is missing: this test needs a dpkg-based host")
    items = make_package_scanner(DPKG_STATUS)()
    assert len(items) > 10
    assert _problems("packages", items) == []
    packages = [i.data["package"] for i in items.values()]
    # dpkg's info dir gives where each package is recorded and when it was installed
    with_record = [p for p in packages if "installed" in p and "path" in p]
    assert len(with_record) > len(packages) * 0.9
    assert all(Path(p["path"]).name.endswith(".list") for p in with_record)


def test_networks_fit_one_document_per_address():
    items = scanners(DPKG_STATUS)["networks"]()
    assert _problems("networks", items) == []
    by_key = {k: i.data for k, i in items.items()}
    loopback = by_key["lo:ipv4:127.0.0.1"]
    assert loopback["observer"]["ingress"]["interface"]["name"] == "lo"
    assert loopback["interface"]["type"] == "loopback" and loopback["interface"]["mtu"] > 0
    assert loopback["network"]["type"] == "ipv4"
    assert loopback["network"]["netmask"] == "255.0.0.0"
    for key, data in by_key.items():
        ip = data["host"].get("ip")
        if ip is None:
            assert ":" not in key  # an interface without addresses: keyed by its name
            continue
        assert "%" not in ip and key.endswith(f":{ip}")
        assert data["network"]["type"] == f"ipv{ipaddress.ip_address(ip).version}"


def test_ports_fit_and_name_their_process():
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("::1", 0))
        items = scanners(DPKG_STATUS)["ports"]()
        assert _problems("ports", items) == []
        tcp_port, udp_port = tcp.getsockname()[1], udp.getsockname()[1]
        listening = items[f"tcp:ipv4:127.0.0.1:{tcp_port}"].data
        bound = items[f"udp:ipv6:::1:{udp_port}"].data
    finally:
        tcp.close()
        udp.close()
    assert listening["network"] == {"protocol": "tcp"}
    assert listening["source"] == {"ip": "127.0.0.1", "port": tcp_port}
    assert listening["interface"] == {"state": "listening"}
    assert listening["process"]["pid"] == os.getpid()
    assert listening["process"]["name"]
    assert listening["file"]["inode"].isdigit()
    assert bound["network"] == {"protocol": "udp"} and bound["source"]["ip"] == "::1"
    assert bound["process"]["pid"] == os.getpid()


def test_system_and_hardware_fit():
    found = scanners(DPKG_STATUS)
    system = found["system"]()
    hardware = found["hardware"]()
    assert _problems("system", system) == [] and _problems("hardware", hardware) == []
    host = system["system"].data["host"]
    assert host["boot"]["id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert host["hostname"] == socket.gethostname()
    assert host["os"]["type"] == "linux" and host["os"]["kernel"] == os.uname().release
    assert isinstance(host["uptime"], int)
    memory = hardware["hardware"].data["host"]["memory"]
    assert 0 <= memory["used"]["percentage"] <= 100 and memory["total"] > 0


def test_volatile_figures_do_not_change_the_digest():
    """Two scans a moment apart: only uptime, load and traffic moved; digests equal."""
    found = scanners(DPKG_STATUS)
    for name in ("system", "hardware", "networks"):
        first, second = found[name](), found[name]()
        stable = STABLE[name]
        assert {k: digest_of(stable(i.data)) for k, i in first.items()} == {
            k: digest_of(stable(i.data)) for k, i in second.items()
        }, name


def test_fim_documents_fit(tmp_path):
    w = tmp_path / "w"
    (w / "sub").mkdir(parents=True)
    (w / "a").write_text("alpha\n")
    (w / "sub" / "b").write_bytes(b"\x00" * 100)
    (w / "big").write_bytes(b"x" * 5000)
    os.symlink("a", w / "link")
    scanner = FimScanner([str(w)], [], max_file_bytes=1000)
    items = scanner.scan({})
    assert set(items) == {str(w / "a"), str(w / "sub" / "b"), str(w / "big"), str(w / "link")}
    # fim's index has no @timestamp: the documents go as they are
    assert _problems("file", items, stamp=False) == []
    a = items[str(w / "a")].data["file"]
    assert set(a["hash"]) == {"md5", "sha1", "sha256"}
    assert "hash" not in items[str(w / "big")].data["file"]
    assert items[str(w / "link")].data["file"]["target_path"] == "a"


def test_collectors_once_reach_the_strict_server(
    make_config, start_pipeline, run_service, tmp_path
):
    """Every built-in collector, once, through the real forwarder to the reference server.

    The forwarder's own check is off, so the server judges every document: no item fails,
    nothing is quarantined, and each index holds what was created.
    """
    sink = start_pipeline(check_documents=False)
    watched = tmp_path / "watched"
    (watched / "sub").mkdir(parents=True)
    (watched / "a.conf").write_text("alpha\n")
    (watched / "sub" / "b.conf").write_text("beta\n")
    os.symlink("a.conf", watched / "link")
    config = make_config(
        {
            "collectors": {
                "inventory": {"collectors": COLLECTORS, "dpkg_status": DPKG_STATUS},
                "fim": {"paths": [str(watched)]},
            }
        }
    )
    sent: dict[str, int] = {}
    for service in (InventoryService(config, ONCE), FimService(config, ONCE)):
        thread = run_service(service)
        assert thread.join(120) == 0
        counters = service.metrics
        assert counters.get(km.EVENTS_REJECTED) == 0, counters.snapshot()
        if km.SCAN_ERRORS in counters.declared:  # inventory's (fim counts errors by reason)
            assert counters.get(km.SCAN_ERRORS) == 0, counters.snapshot()
        sent[service.name] = counters.get(km.EVENTS_SENT)
    total = sum(sent.values())
    assert sent["inventory"] > 100 and sent["fim"] == 3

    forwarder = sink.forwarder.service
    wait_for(lambda: sink.count() >= total and forwarder.status()["queue_events"] == 0, 60)
    status: dict[str, Any] = forwarder.status()
    stateful = status["queues"]["stateful"]
    assert stateful["item_failures"] == 0, status
    assert status["quarantined"] == 0 and status["quarantine_events"] == 0, status
    events = sink.snapshot()
    assert len(events) == total and {e["operation"] for e in events} == {"create"}
    for module, collector in {(e["module"], e["collector"]) for e in events}:
        index = index_name(module, collector)
        expected = sum(1 for e in events if (e["module"], e["collector"]) == (module, collector))
        docs = sink.server.documents(index)
        assert len(docs) == expected, index
        fields = index_for(module, collector)
        assert fields is not None
        assert [d["id"] for d in docs if check_document(fields, d["data"])] == []
    kinds = {e["collector"] for e in events if e["module"] == "inventory"}
    assert kinds == set(COLLECTORS)


def test_fim_reports_inode_flags(tmp_path):
    f = tmp_path / "log"
    f.write_text("x\n")
    done = subprocess.run(["chattr", "+a", str(f)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot set an inode flag here: {done.stderr.strip()}")
    try:
        items = FimScanner([str(f)], [], max_file_bytes=1000).scan({})
    finally:
        subprocess.run(["chattr", "-a", str(f)], check=True)
    assert items[str(f)].data["file"]["attributes"] == ["append_only"]
    assert _problems("file", items, stamp=False) == []
