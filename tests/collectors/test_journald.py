"""The logcollector's journal source against real journal files (journalctl reads them).

The files are written by systemd-journal-remote from the journal export format
(journal_files.py); the tests skip, saying so, where it is not installed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from collectors import metrics as km
from collectors.logcollector import journald
from collectors.logcollector.offsets import OffsetStore
from collectors.logcollector.service import JOURNAL_BATCH, LogcollectorService
from tests.collectors.journal_files import JournalWriter, needs_journal_tools
from tests.fixtures.common import wait_for, write_config
from tests.fixtures.run import clean_env

pytestmark = needs_journal_tools

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _section(directory: Path, **extra: Any) -> dict[str, Any]:
    return {
        "journald": "on",
        "journald_directory": str(directory),
        "journald_priority": "debug",
        "paths": [],
        "syslog_paths": [],
        "read_from": "start",
        "poll_interval": "50ms",
        **extra,
    }


def _config(make_config: Any, directory: Path, **extra: Any) -> Any:
    return make_config({"collectors": {"logcollector": _section(directory, **extra)}})


def _messages(sink: Any) -> list[str]:
    return [
        d["event"]["original"]
        for e in sink.snapshot()
        if e.get("collector") == "journald" and (d := e["data"])
    ]


def test_entries_become_events_with_their_fields(make_config, sink, run_service, tmp_path):
    journal = JournalWriter(tmp_path / "journal")
    journal.write(
        [
            {
                "MESSAGE": "Accepted publickey for alice",
                "PRIORITY": "6",
                "SYSLOG_IDENTIFIER": "sshd",
                "_SYSTEMD_UNIT": "ssh.service",
                "_PID": "4242",
                "_COMM": "sshd",
                "_HOSTNAME": "web-1",
            },
            {"MESSAGE": b"raw \xff\xfe bytes", "PRIORITY": "3", "SYSLOG_PID": "77"},
            {"MESSAGE": "x" * 300, "PRIORITY": "4"},
            {"PRIORITY": "6", "SYSLOG_IDENTIFIER": "no-message"},  # nothing to read
        ]
    )
    run_service(LogcollectorService(_config(make_config, journal.directory, max_line_bytes=100)))

    wait_for(lambda: len(_messages(sink)) == 3)
    events = [e for e in sink.snapshot() if e["collector"] == "journald"]
    assert {(e["module"], e["type"]) for e in events} == {("logcollector", "stateless")}
    first, binary, long = (e["data"] for e in events)
    assert first["event"]["original"] == "Accepted publickey for alice"
    assert ISO_UTC.match(first["event"]["created"]) and ISO_UTC.match(first["@timestamp"])
    assert first["log"]["syslog"] == {"priority": 6, "appname": "sshd"}
    assert first["log"]["journal"]["cursor"].startswith("s=")
    assert first["process"] == {"pid": 4242, "name": "sshd"}
    assert first["systemd"] == {"unit": "ssh.service"}
    assert first["host"] == {"hostname": "web-1"}
    assert "tags" not in first

    assert binary["event"]["original"] == "raw \ufffd\ufffd bytes"
    assert binary["event"]["original_base64"] == "cmF3IP/+IGJ5dGVz"
    assert binary["tags"] == ["invalid_utf8"] and binary["process"] == {"pid": 77}
    assert binary["log"]["syslog"] == {"priority": 3}

    assert long["event"]["original"] == "x" * 100 and long["event"]["truncated"] is True
    assert long["tags"] == ["truncated"]


def test_filters_by_unit_identifier_and_priority(make_config, stub_ingest, run_service, tmp_path):
    journal = JournalWriter(tmp_path / "journal")
    rows = [
        ("ssh.service", "sshd", "6", "ssh info"),
        ("ssh.service", "sshd", "7", "ssh debug"),  # below the priority
        ("cron.service", "CRON", "6", "cron info"),  # neither the unit nor the identifier
        ("user@0.service", "sudo", "5", "sudo notice"),  # the identifier
        ("nginx.service", "nginx", "3", "nginx error"),  # the second unit
    ]
    journal.write(
        {"_SYSTEMD_UNIT": u, "SYSLOG_IDENTIFIER": i, "PRIORITY": p, "MESSAGE": m}
        for u, i, p, m in rows
    )
    journal.write(
        [{"_PID": "1", "UNIT": "ssh.service", "PRIORITY": "6", "MESSAGE": "Started ssh.service"}]
    )
    config = _config(
        make_config,
        journal.directory,
        journald_units=["ssh", "nginx.service"],
        journald_identifiers=["sudo"],
        journald_priority="info",
    )
    svc = run_service(LogcollectorService(config))
    wanted = ["ssh info", "sudo notice", "nginx error", "Started ssh.service"]
    wait_for(lambda: len(stub_ingest.data()) >= 4)
    # an entry that passes, written last: once it is in, anything else would be too
    journal.write([{"SYSLOG_IDENTIFIER": "sudo", "PRIORITY": "0", "MESSAGE": "last"}])
    wait_for(lambda: len(stub_ingest.data()) >= 5)
    assert [d["event"]["original"] for d in stub_ingest.data()] == [*wanted, "last"]
    # counted once the send is acknowledged, a moment after the ingest socket has it
    wait_for(lambda: svc.service.metrics.get(km.JOURNAL_ENTRIES) == 5)


def test_restart_resumes_after_the_saved_cursor_across_rotation(
    make_config, sink, run_service, tmp_path
):
    journal = JournalWriter(tmp_path / "journal")
    journal.messages(f"entry {i}" for i in range(50))
    config = _config(make_config, journal.directory)
    svc = run_service(LogcollectorService(config))
    wait_for(lambda: len(_messages(sink)) == 50)

    # Rotation while it follows: the active file is archived, a new one is written.
    journal.rotate()
    journal.messages(f"entry {i}" for i in range(50, 80))
    wait_for(lambda: len(_messages(sink)) == 80)
    assert svc.stop() == 0

    store = OffsetStore(config.data_dir / "collectors" / "logcollector.db")
    assert store.cursor(str(journal.directory)) is not None
    store.close()

    # Written while stopped, and rotated again.
    journal.messages(f"entry {i}" for i in range(80, 100))
    journal.rotate()
    journal.messages(f"entry {i}" for i in range(100, 120))
    run_service(LogcollectorService(config))
    journal.messages(f"entry {i}" for i in range(120, 130))
    wait_for(lambda: len(_messages(sink)) >= 130)
    assert _messages(sink) == [f"entry {i}" for i in range(130)]


def test_a_deleted_cursor_file_resumes_at_the_entries_after_it(
    make_config, stub_ingest, run_service, tmp_path
):
    journal = JournalWriter(tmp_path / "journal")
    journal.messages(f"old {i}" for i in range(10))
    config = _config(make_config, journal.directory)
    svc = run_service(LogcollectorService(config))
    wait_for(lambda: len(stub_ingest.data()) == 10)
    assert svc.stop() == 0
    archived = journal.rotate()
    journal.messages(f"new {i}" for i in range(10))
    archived.unlink()  # the file of the saved cursor is gone: placed by its time
    run_service(LogcollectorService(config))
    wait_for(lambda: len(stub_ingest.data()) >= 20)
    assert [d["event"]["original"] for d in stub_ingest.data()] == [
        *(f"old {i}" for i in range(10)),
        *(f"new {i}" for i in range(10)),
    ]


def test_read_from_end_starts_with_new_entries(make_config, stub_ingest, run_service, tmp_path):
    journal = JournalWriter(tmp_path / "journal")
    journal.messages(["before start"])
    svc = run_service(LogcollectorService(_config(make_config, journal.directory, read_from="end")))
    wait_for(lambda: svc.service.sources()["journald"] == "live")
    wait_for(lambda: svc.service.journal is not None)
    journal.messages(["after start"])
    wait_for(lambda: len(stub_ingest.data()) >= 1)
    assert [d["event"]["original"] for d in stub_ingest.data()] == ["after start"]


@pytest.mark.timeout(180)
def test_kill_9_loses_nothing_and_repeats_at_most_what_was_in_flight(make_config, sink, tmp_path):
    total = 3 * JOURNAL_BATCH
    journal = JournalWriter(tmp_path / "journal")
    journal.messages(f"entry {i:06d}" for i in range(total))
    config = make_config()
    path = write_config(
        config, tmp_path / "lc.toml", collectors={"logcollector": _section(journal.directory)}
    )
    log = tmp_path / "lc.log"

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "agent.main", "logcollector", "--config", str(path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_env(),
            )

    proc = start()
    try:
        wait_for(lambda: sink.count() > 0, timeout=60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        store = OffsetStore(config.data_dir / "collectors" / "logcollector.db")
        saved = store.cursor(str(journal.directory))
        store.close()
        assert saved != _last_cursor(journal.directory), "killed too late: nothing in flight"
        # journalctl, in its own session, ends once its reader is gone
        pids = [int(p) for p in re.findall(r"journalctl pid (\d+)", log.read_text())]
        assert pids
        wait_for(lambda: not any(_alive(p) for p in pids), timeout=15)

        proc = start()
        wait_for(lambda: len(set(_messages(sink))) == total, timeout=120)
    finally:
        proc.kill()
        proc.wait(10)
    got = _messages(sink)
    assert set(got) == {f"entry {i:06d}" for i in range(total)}
    repeated = [m for m, n in Counter(got).items() if n > 1]
    assert all(Counter(got)[m] == 2 for m in repeated)
    assert len(repeated) <= JOURNAL_BATCH  # at most the batch in flight
    # ... and the repeats are one contiguous run of entries, right after the last saved one
    if repeated:
        numbers = sorted(int(m.split()[1]) for m in repeated)
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def _last_cursor(directory: Path) -> str:
    out = subprocess.run(
        ["journalctl", f"--directory={directory}", "-o", "json", "-n", "1"],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    return str(json.loads(out)["__CURSOR"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (reaped by init later) is gone for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


# -- the packaged defaults' choice --------------------------------------------------------


def test_auto_reads_the_journal_and_not_the_syslog_files_when_journald_runs(
    make_config, stub_ingest, run_service, tmp_path, monkeypatch
):
    """rsyslog writes the journal's lines to /var/log/syslog too: only one copy is sent."""
    syslog = tmp_path / "syslog"
    syslog.write_text("Dec  3 10:00:00 h1 app: the same line\n")
    journal = JournalWriter(tmp_path / "journal")
    journal.messages(["the same line"])
    section = _section(journal.directory, journald="auto", syslog_paths=[str(syslog)])
    svc = run_service(LogcollectorService(make_config({"collectors": {"logcollector": section}})))
    wait_for(lambda: len(stub_ingest.data()) >= 1)
    sources = svc.service.sources()
    assert sources["journald"] == "live"
    assert sources["syslog_files"].startswith("off: the journal is collected")
    # a poll of the files later, still only the journal's copy
    syslog.open("a").write("Dec  3 10:00:01 h1 app: another\n")
    journal.messages(["another"])
    wait_for(lambda: len(stub_ingest.data()) >= 2)
    svc.stop()
    assert [(e["collector"], e["data"]["event"]["original"]) for e in stub_ingest.snapshot()] == [
        ("journald", "the same line"),
        ("journald", "another"),
    ]


def test_auto_reads_the_syslog_files_when_journald_does_not_run(
    make_config, stub_ingest, run_service, tmp_path, monkeypatch
):
    monkeypatch.setattr(journald, "JOURNALD_RUNTIME", tmp_path / "no-journald")
    syslog = tmp_path / "syslog"
    syslog.write_text("a classic line\n")
    section = {
        "journald": "auto",
        "syslog_paths": [str(syslog)],
        "read_from": "start",
        "poll_interval": "50ms",
    }
    svc = run_service(LogcollectorService(make_config({"collectors": {"logcollector": section}})))
    wait_for(lambda: len(stub_ingest.data()) == 1)
    assert stub_ingest.snapshot()[0]["collector"] == "file"
    status = svc.service.status()
    assert status["sources"]["journald"].startswith("off: journald does not run")
    assert status["sources"]["syslog_files"] == "live"
    assert status["sources"]["commands"] == "off: none configured"


def test_journald_on_without_a_journal_shows_the_error_and_keeps_the_files(
    make_config, stub_ingest, run_service, tmp_path
):
    log = tmp_path / "app.log"
    log.write_text("still read\n")
    section = _section(tmp_path / "missing", paths=[str(log)])
    svc = run_service(LogcollectorService(make_config({"collectors": {"logcollector": section}})))
    wait_for(lambda: len(stub_ingest.data()) == 1)
    wait_for(lambda: svc.service.metrics.get(km.JOURNAL_ERRORS, reason="exited") >= 1)
    state = svc.service.status()["sources"]["journald"]
    assert state.startswith("error: journalctl exited with 1") and "trying again" in state
    assert svc.service.status()["sources"]["files"] == "live"
