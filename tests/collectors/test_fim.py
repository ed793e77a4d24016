"""fim: create, modify and delete of real files, reported once each."""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
from typing import Any

from collectors import metrics as km
from collectors.fim.service import FimService
from tests.fixtures.collectors import write_credentials
from tests.fixtures.common import wait_for

ONCE = argparse.Namespace(once=True)


def _scan(run_service: Any, config: Any, sink: Any) -> dict[str, dict[str, Any]]:
    """One scan; its events by file path (deletes by document id)."""
    before = len(sink.snapshot())
    svc = run_service(FimService(config, ONCE))
    assert svc.join(60) == 0
    # Committed by the forwarder once the scan returns; at the server a moment later.
    sent = svc.service.metrics.get(km.EVENTS_SENT)
    wait_for(lambda: len(sink.snapshot()) >= before + sent)
    out: dict[str, dict[str, Any]] = {}
    for ev in sink.snapshot()[before:]:
        assert (ev["module"], ev["collector"], ev["type"]) == ("fim", "file", "stateful")
        out[ev["data"]["file"]["path"] if "data" in ev else ev["id"]] = ev
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_create_modify_delete(make_config, sink, run_service, tmp_path):
    watched = tmp_path / "etc"
    (watched / "sub").mkdir(parents=True)
    (watched / "skip").mkdir()
    a, b, c = watched / "a.conf", watched / "b.conf", watched / "sub" / "c.conf"
    a.write_text("alpha\n")
    b.write_text("beta\n")
    c.write_text("gamma\n")
    (watched / "skip" / "x").write_text("excluded\n")
    os.symlink("a.conf", watched / "link")
    config = make_config(
        {"collectors": {"fim": {"paths": [str(watched)], "exclude": [str(watched / "skip")]}}}
    )
    uuid = write_credentials(config)

    first = _scan(run_service, config, sink)
    assert set(first) == {str(a), str(b), str(c), str(watched / "link")}
    assert {e["operation"] for e in first.values()} == {"create"}
    fa = first[str(a)]
    assert fa["id"] == hashlib.sha1(f"{uuid}:{a}".encode()).hexdigest()
    st = a.stat()
    assert fa["data"]["file"]["hash"]["sha256"] == _sha256(a)
    assert fa["data"]["file"]["size"] == 6
    assert fa["data"]["file"]["mode"] == f"{st.st_mode & 0o7777:04o}"
    assert fa["data"]["file"]["uid"] == str(st.st_uid) and fa["data"]["file"]["owner"]
    assert fa["data"]["file"]["mtime"].endswith("Z")
    link = first[str(watched / "link")]["data"]["file"]
    assert link["type"] == "symlink" and link["target_path"] == "a.conf" and "hash" not in link

    # Nothing changed: nothing sent.
    assert _scan(run_service, config, sink) == {}

    with a.open("a") as fh:
        fh.write("more\n")
    b.chmod(0o600)
    c.unlink()
    d = watched / "sub" / "d.conf"
    d.write_text("delta\n")
    second = _scan(run_service, config, sink)
    assert set(second) == {str(a), str(b), first[str(c)]["id"], str(d)}
    assert second[str(a)]["operation"] == "update"
    assert second[str(a)]["data"]["file"]["hash"]["sha256"] == _sha256(a)
    assert second[str(b)]["operation"] == "update"
    assert second[str(b)]["data"]["file"]["mode"] == "0600"
    assert second[first[str(c)]["id"]]["operation"] == "delete"
    assert "data" not in second[first[str(c)]["id"]]
    assert second[str(d)]["operation"] == "create"
    # The server's fim index mirrors the directory as it is now.
    docs = sink.server.documents("wazuh-states-fim")
    assert {doc["data"]["file"]["path"] for doc in docs} == {
        str(a),
        str(b),
        str(d),
        str(watched / "link"),
    }


def test_same_size_same_mtime_content_change_is_seen(make_config, sink, run_service, tmp_path):
    f = tmp_path / "w" / "bin"
    f.parent.mkdir()
    f.write_bytes(b"AAAA")
    config = make_config({"collectors": {"fim": {"paths": [str(f.parent)]}}})
    write_credentials(config)
    _scan(run_service, config, sink)
    st = f.stat()
    f.write_bytes(b"BBBB")  # same size; put the old mtime back, as an attacker would
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = _scan(run_service, config, sink)
    assert second[str(f)]["operation"] == "update"
    assert second[str(f)]["data"]["file"]["hash"]["sha256"] == hashlib.sha256(b"BBBB").hexdigest()


def test_large_files_are_reported_without_a_hash(make_config, sink, run_service, tmp_path):
    w = tmp_path / "w"
    w.mkdir()
    (w / "big").write_bytes(b"x" * 5000)
    config = make_config({"collectors": {"fim": {"paths": [str(w)], "max_file_bytes": 1000}}})
    write_credentials(config)
    first = _scan(run_service, config, sink)
    big = first[str(w / "big")]["data"]["file"]
    assert big["size"] == 5000 and "hash" not in big
