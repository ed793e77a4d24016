"""logcollector against real files and a real ingest socket."""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from collectors import metrics as km
from collectors.logcollector.offsets import OffsetStore
from collectors.logcollector.service import LogcollectorService
from tests.fixtures.common import wait_for

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _config(make_config: Any, paths: list[str], **extra: Any) -> Any:
    section = {
        "paths": paths,
        # files only: the host's journal and syslog files are not these tests' business
        "journald": "off",
        "syslog_paths": [],
        "read_from": "start",
        "poll_interval": "50ms",
        "rotate_wait": "300ms",
    }
    section.update(extra)
    return make_config({"collectors": {"logcollector": section}})


def _originals(sink: Any, path: str | None = None) -> list[str]:
    return [
        d["event"]["original"]
        for d in sink.data()
        if path is None or d["log"]["file"]["path"] == path
    ]


def _append(path: Path, lines: list[str] | range, fmt: str = "line {}") -> None:
    with path.open("a", encoding="utf-8") as fh:
        for i in lines:
            fh.write((fmt.format(i) if not isinstance(i, str) else i) + "\n")


def test_one_event_per_line_with_the_server_shape(make_config, sink, run_service, tmp_path):
    log = tmp_path / "app.log"
    _append(log, ["first", "second"])
    log.open("a").write("partial")  # no newline yet: held back
    run_service(LogcollectorService(_config(make_config, [str(log)])))

    wait_for(lambda: len(_originals(sink)) == 2)
    events = sink.snapshot()
    assert {(e["module"], e["collector"]) for e in events} == {("logcollector", "file")}
    first = events[0]["data"]
    assert first["event"]["original"] == "first"
    assert ISO_UTC.match(first["event"]["created"])
    assert first["log"]["file"]["path"] == str(log)
    assert first["log"]["offset"] == 0 and events[1]["data"]["log"]["offset"] == 6

    log.open("a").write(" now complete\r\n")
    wait_for(lambda: len(_originals(sink)) == 3)
    assert _originals(sink) == ["first", "second", "partial now complete"]


def test_restart_neither_loses_nor_repeats(make_config, sink, run_service, tmp_path):
    log = tmp_path / "app.log"
    _append(log, range(100))
    config = _config(make_config, [str(log)])
    svc = run_service(LogcollectorService(config))
    wait_for(lambda: len(_originals(sink)) == 100)
    assert svc.stop() == 0

    _append(log, range(100, 150))  # written while the collector is down
    run_service(LogcollectorService(config))
    _append(log, range(150, 200))
    wait_for(lambda: len(_originals(sink)) >= 200)
    assert _originals(sink) == [f"line {i}" for i in range(200)]


def test_read_from_end_skips_old_lines_only_the_first_time(
    make_config, sink, run_service, tmp_path
):
    log = tmp_path / "app.log"
    _append(log, ["old"])
    config = _config(make_config, [str(log)], read_from="end")
    svc = run_service(LogcollectorService(config))
    wait_for(lambda: str(log) in svc.service.tails)
    _append(log, ["new 1"])
    wait_for(lambda: _originals(sink) == ["new 1"])
    svc.stop()
    _append(log, ["new 2"])  # while stopped: must not be skipped on restart
    run_service(LogcollectorService(config))
    wait_for(lambda: _originals(sink) == ["new 1", "new 2"])


def test_rename_rotation(make_config, sink, run_service, tmp_path):
    log = tmp_path / "app.log"
    _append(log, range(50))
    run_service(LogcollectorService(_config(make_config, [str(log)])))
    wait_for(lambda: len(_originals(sink)) == 50)

    # logrotate: rename, the writer still has the old file open for a moment, then a new file.
    writer = log.open("a", encoding="utf-8")
    os.rename(log, tmp_path / "app.log.1")
    writer.write("line 50\nline 51\n")
    writer.flush()
    _append(log, range(52, 60))
    writer.write("line 52 late\n")
    writer.close()
    wait_for(lambda: len(_originals(sink)) == 61)
    got = _originals(sink)
    assert Counter(got) == Counter([f"line {i}" for i in range(60)] + ["line 52 late"])
    # Lines of the rotated file keep the path they were found under.
    assert all(d["log"]["file"]["path"] == str(log) for d in sink.data())


def test_rotated_file_last_unterminated_line_is_sent(make_config, sink, run_service, tmp_path):
    log = tmp_path / "app.log"
    _append(log, ["a"])
    log.open("a").write("no newline ever")
    run_service(LogcollectorService(_config(make_config, [str(log)])))
    wait_for(lambda: _originals(sink) == ["a"])
    os.rename(log, tmp_path / "app.log.1")
    _append(log, ["b"])
    wait_for(lambda: sorted(_originals(sink)) == ["a", "b", "no newline ever"])


def test_copytruncate(make_config, sink, run_service, tmp_path):
    log = tmp_path / "app.log"
    _append(log, range(30))
    run_service(LogcollectorService(_config(make_config, [str(log)])))
    wait_for(lambda: len(_originals(sink)) == 30)

    shutil.copy(log, tmp_path / "app.log.1")
    with log.open("r+") as fh:
        fh.truncate(0)
    _append(log, range(30, 40))
    wait_for(lambda: len(_originals(sink)) >= 40)
    assert _originals(sink) == [f"line {i}" for i in range(40)]


def test_copytruncate_refilled_past_the_old_offset(make_config, sink, run_service, tmp_path):
    log = tmp_path / "app.log"
    _append(log, ["short"])
    config = _config(make_config, [str(log)])
    svc = run_service(LogcollectorService(config))
    wait_for(lambda: _originals(sink) == ["short"])
    svc.stop()
    # While stopped the file is truncated and refilled beyond the saved offset: the
    # fingerprint of its first bytes tells the collector it is new content.
    log.write_text("".join(f"fresh {i}\n" for i in range(5)))
    run_service(LogcollectorService(config))
    wait_for(lambda: len(_originals(sink)) == 6)
    assert _originals(sink) == ["short"] + [f"fresh {i}" for i in range(5)]


def test_glob_picks_up_a_new_file(make_config, sink, run_service, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    _append(logs / "a.log", ["a1"])
    (logs / "ignored.txt").write_text("not matched\n")
    run_service(
        LogcollectorService(
            _config(make_config, [str(logs / "*.log")], exclude=[str(logs / "skip*")])
        )
    )
    wait_for(lambda: _originals(sink) == ["a1"])
    _append(logs / "b.log", ["b1", "b2"])  # appears later: read from its start
    _append(logs / "skip.log", ["excluded"])
    wait_for(lambda: len(_originals(sink)) == 3)
    assert sorted(_originals(sink)) == ["a1", "b1", "b2"]
    assert {d["log"]["file"]["path"] for d in sink.data()} == {
        str(logs / "a.log"),
        str(logs / "b.log"),
    }


def test_rotation_while_stopped_finishes_the_old_file(make_config, sink, run_service, tmp_path):
    log = tmp_path / "app.log"
    _append(log, range(10))
    config = _config(make_config, [str(log)], read_from="end")
    svc = run_service(LogcollectorService(config))
    wait_for(lambda: str(log) in svc.service.tails)
    _append(log, range(10, 20))
    wait_for(lambda: len(_originals(sink)) == 10)
    svc.stop()

    _append(log, range(20, 25))  # unread, then rotated away while we are down
    os.rename(log, tmp_path / "app.log.1")
    _append(log, range(25, 30))  # the new file is read from its start despite "end"
    run_service(LogcollectorService(config))
    wait_for(lambda: len(_originals(sink)) >= 20)
    assert Counter(_originals(sink)) == Counter(f"line {i}" for i in range(10, 30))


def test_long_lines_are_cut_and_flagged_and_bad_utf8_is_kept(
    make_config, sink, run_service, tmp_path
):
    log = tmp_path / "app.log"
    bad = b"caf\xe9 \xff\xfe"
    with log.open("wb") as fh:
        fh.write(b"x" * 5000 + b"\n")
        fh.write(bad + b"\n")
        fh.write(b"y" * 3000)  # an over-long line still being written
    config = _config(make_config, [str(log)], max_line_bytes=1024)
    svc = run_service(LogcollectorService(config))
    wait_for(lambda: len(sink.data()) == 3)
    svc.stop()
    with log.open("ab") as fh:
        fh.write(b"y" * 100 + b"\nafter\n")  # the rest of the cut line is skipped
    run_service(LogcollectorService(config))
    wait_for(lambda: len(sink.data()) == 4)

    long1, utf, long2, after = sink.data()
    assert long1["event"]["original"] == "x" * 1024 and long1["event"]["truncated"] is True
    assert "truncated" in long1["tags"]
    assert utf["event"]["original"] == bad.decode("utf-8", "replace")
    assert base64.b64decode(utf["event"]["original_base64"]) == bad
    assert utf["tags"] == ["invalid_utf8"]
    assert long2["event"]["original"] == "y" * 1024 and long2["event"]["truncated"] is True
    assert after["event"]["original"] == "after" and "tags" not in after


@pytest.mark.timeout(180)
def test_burst_of_100000_lines_none_lost_or_repeated(make_config, sink, run_service, tmp_path):
    log = tmp_path / "burst.log"
    run_service(LogcollectorService(_config(make_config, [str(log)])))
    with log.open("w", encoding="utf-8") as fh:
        for i in range(100_000):
            fh.write(f"burst {i:06d} {'p' * 60}\n")
    wait_for(lambda: sink.count() >= 100_000, timeout=150, interval=0.2)
    seen = Counter(int(o.split()[1]) for o in _originals(sink))
    assert len(seen) == 100_000 and set(seen.values()) == {1}


def test_bad_paths_do_not_stop_it(make_config, sink, run_service, tmp_path):
    unreadable = tmp_path / "secret.log"
    unreadable.write_text("hidden\n")
    unreadable.chmod(0)
    good = tmp_path / "good.log"
    _append(good, ["ok"])
    paths = [str(tmp_path / "missing.log"), str(tmp_path), str(unreadable), str(good)]
    svc = run_service(LogcollectorService(_config(make_config, paths)))
    wait_for(lambda: "ok" in _originals(sink))
    if os.geteuid() != 0:
        assert svc.service.metrics.get(km.OPEN_ERRORS) >= 1
    assert svc.alive


def test_offsets_saved_only_after_the_forwarder_commits(
    make_config, stub_ingest, run_service, tmp_path
):
    log = tmp_path / "app.log"
    _append(log, range(20))
    config = _config(make_config, [str(log)])
    stub_ingest.full_answers = 3  # "full" three times: retried, nothing lost or repeated
    service = LogcollectorService(config)
    service.ingest_timeout = 1.0
    svc = run_service(service)
    wait_for(lambda: len(stub_ingest.data()) == 20)
    assert svc.service.metrics.get(km.FORWARDER_FULL) == 3

    stub_ingest.silent = True  # a hung forwarder: the offset must stay where it is
    _append(log, range(20, 30))
    wait_for(lambda: svc.service.metrics.get(km.SEND_TIMEOUTS) >= 1, timeout=20)
    assert svc.stop() == 0
    store = OffsetStore(config.data_dir / "collectors" / "logcollector.db")
    (row,) = store.load().values()
    store.close()
    assert row.offset == log.stat().st_size - 10 * len("line 20\n")

    stub_ingest.silent = False
    run_service(LogcollectorService(config))
    wait_for(lambda: len(stub_ingest.data()) >= 30, timeout=20)
    got = [d["event"]["original"] for d in stub_ingest.data()]
    assert got[:20] == [f"line {i}" for i in range(20)]
    assert sorted(set(got[20:])) == sorted(f"line {i}" for i in range(20, 30))


@pytest.mark.timeout(120)
def test_a_full_forwarder_delays_lines_without_losing_or_repeating_them(
    make_config, start_pipeline, run_service, tmp_path
):
    # A tiny queue and a server that answers 503: the forwarder fills up and says "full".
    sink = start_pipeline(max_queue_bytes="64KB", backoff_initial="100ms", backoff_max="500ms")
    sink.server.set_fault(status=503, path="/api/v1/events/stateless")
    log = tmp_path / "app.log"
    fmt = "full-test line {:05d} " + "x" * 60
    _append(log, range(1000), fmt=fmt)
    svc = run_service(LogcollectorService(_config(make_config, [str(log)])))
    # The first batch fills the (empty) queue past its bound; it cannot drain.
    wait_for(lambda: svc.service.metrics.get(km.LINES) == 1000, timeout=30)
    _append(log, range(1000, 3000), fmt=fmt)
    wait_for(lambda: svc.service.metrics.get(km.FORWARDER_FULL) >= 2, timeout=30)
    assert svc.service.metrics.get(km.LINES) == 1000  # the rest is held back, not dropped

    sink.server.clear_faults()
    wait_for(lambda: sink.count() >= 3000, timeout=60)
    wait_for(lambda: svc.service.metrics.get(km.LINES) == 3000, timeout=10)
    seen = Counter(o.split()[2] for o in _originals(sink))
    assert len(seen) == 3000 and set(seen.values()) == {1}


def test_deleted_and_recreated_file_is_read_from_its_start(
    make_config, sink, run_service, tmp_path
):
    log = tmp_path / "app.log"
    _append(log, [f"old {i}" for i in range(20)])
    run_service(LogcollectorService(_config(make_config, [str(log)])))
    wait_for(lambda: len(_originals(sink)) == 20)
    log.unlink()
    # The new file often gets the freed inode back; it must not resume at the old offset.
    _append(log, ["new 0", "new 1"])
    wait_for(lambda: len(_originals(sink)) >= 22)
    assert _originals(sink)[20:] == ["new 0", "new 1"]
