"""The footprint benchmark's pieces (bench/footprint.py, bench/_footprint.py) and one tiny
whole run of it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from bench import _footprint, footprint, peer_syslog_ng
from bench.runner import plain_install_env

pytestmark = pytest.mark.bench


@pytest.mark.parametrize(
    ("cmdline", "name"),
    [
        (["/v/bin/python", "-m", "agent.main", "run", "--config", "c.toml"], "agent (supervisor)"),
        (["/v/bin/python", "-m", "agent.main", "forwarder", "--config", "c"], "forwarder"),
        (["/v/bin/python", "/v/bin/agentbus", "fim"], "fim"),
        (["/usr/bin/dpkg-query", "-W"], "dpkg-query"),
        (["/v/bin/python3", "-c", "print(1)", "x"], "python3 -c print(1)"),
        ([], "?"),
    ],
)
def test_process_names_come_from_the_command_line(cmdline: list[str], name: str) -> None:
    assert _footprint.process_name(cmdline) == name


def test_window_measures_every_process_of_a_tree() -> None:
    burn_then_sleep = (
        "import subprocess, time\n"
        "child = subprocess.Popen(['sleep', '30'])\n"
        "t = time.process_time()\n"
        "while time.process_time() - t < 0.3: pass\n"
        "time.sleep(30)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", burn_then_sleep])
    try:
        deadline = time.monotonic() + 10
        while len(_footprint.tree(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        window = _footprint.Window(parent.pid).start()
        time.sleep(1.0)
        rows = window.stop()
    finally:
        for p in reversed(_footprint.tree(parent.pid)):
            p.kill()
        parent.wait()
    by_name = {r["name"].split()[0]: r for r in rows}
    assert set(by_name) == {os.path.basename(sys.executable), "sleep"}
    python, sleep = by_name[os.path.basename(sys.executable)], by_name["sleep"]
    assert python["cpu_s"] > 0.1 and python["cpu_pct"] > 10
    assert sleep["cpu_s"] < 0.05 and sleep["threads"] == 1
    for r in rows:
        assert 0 < r["uss_mb"] <= r["pss_mb"] <= r["rss_mb"]
        assert r["fds"] >= 3 and r["wakeups"] >= 0 and not r["new"]
    total = _footprint.total(rows)
    assert total["processes"] == 2
    assert total["pss_mb"] == pytest.approx(python["pss_mb"] + sleep["pss_mb"])


def test_memory_and_switches_of_this_process() -> None:
    mem = _footprint.memory_kb(os.getpid())
    assert 0 < mem["uss"] <= mem["pss"] <= mem["rss"]
    assert os.getpid() in _footprint.thread_switches(os.getpid())
    zmq.Context.instance()  # the compiled extension is mapped
    assert _footprint.maps_package(os.getpid(), "zmq")
    assert not _footprint.maps_package(os.getpid(), "no_such_package")


def test_checkpoints_and_load_figures() -> None:
    assert _footprint.checkpoints(1_000_000) == [250_000, 500_000, 1_000_000]
    assert _footprint.checkpoints(3) == [1, 3]
    assert _footprint.checkpoints(0) == []
    f = _footprint.load_figures(cpu_s=0.9, events=30_000, seconds=30.0, idle_cpu_pct=1.0)
    assert f["cpu_pct"] == pytest.approx(3.0)
    assert f["per_1000"] == pytest.approx(0.03)
    assert f["net_per_1000"] == pytest.approx((0.9 - 0.3) / 30)


def test_plain_install_hides_the_server_packages(tmp_path: Path) -> None:
    probe = [
        sys.executable,
        "-c",
        "import jwt.algorithms, importlib.util as u; "
        "print(jwt.algorithms.has_crypto, u.find_spec('fastapi') is None)",
    ]
    env = dict(os.environ)
    plain = plain_install_env(tmp_path / "site", env)
    assert subprocess.run(probe, env=env, capture_output=True, text=True).stdout.split() == [
        "True",
        "False",
    ]
    out = subprocess.run(probe, env=plain, capture_output=True, text=True)
    assert out.stdout.split() == ["False", "True"], out.stderr


def test_options_and_flavours() -> None:
    args = footprint.parse_args([])
    assert (args.idle, args.load_seconds, args.rate, args.queued, args.later) == (
        60.0,
        30.0,
        1000,
        1_000_000,
        30.0,
    )
    assert [str(f) for f in footprint.flavours(args.install, args.isolation)] == [
        "agentbus plain, thread",
        "agentbus plain, process",
        "agentbus dev, thread",
        "agentbus dev, process",
    ]
    assert footprint.flavours("dev", "process") == [footprint.Flavour("dev", "process")]


def _row(name: str, pid: int, **figures: float) -> dict[str, object]:
    base = dict.fromkeys(_footprint.SUMMED, 1.0) | {"threads": 2, "fds": 5}
    return {"name": name, "pid": pid, "new": False, **base, **figures}


def test_report_tables() -> None:
    idle_rows = [_row("agent (supervisor)", 10, pss_mb=20.0), _row("forwarder", 11, pss_mb=30.0)]
    result = {
        "label": "agentbus plain, process",
        "install": "plain",
        "idle": {"rows": idle_rows, "total": _footprint.total(idle_rows), "seconds": 60.0},
        "load": {
            "rows": [_row("forwarder", 11, cpu_pct=2.5), _row("forwarder", 12)],
            "total": _footprint.total(idle_rows),
            **_footprint.load_figures(0.9, 30_000, 30.0, 1.0),
            "rate": 1000,
            "delivered": 30_000,
        },
        "queued": {
            "n": 1000,
            "points": [("250 queued", 250, 51.0), ("30 s later", 1000, 52.0)],
            "peak_mb": 55.0,
            "ingest_eps": 5000.0,
            "rows": idle_rows,
            "later": 30.0,
        },
    }
    table = footprint.process_table(result)
    assert "agent (supervisor)" in table and "whole agent" in table
    assert any(line.startswith("forwarder") and " 12 " in line for line in table.splitlines())
    words = footprint.verdicts(result)
    assert "PSS 50.0 MB (target <= 60 MB: met" in words
    assert "55.0 MB" in words and "0.0300 CPU-s per 1,000 events" in words
    summary = footprint.summary_table(
        [result, {"label": "syslog-ng", "skipped": "not installed"}, {"label": "x", "error": "E"}]
    )
    assert "51.0, 52.0" in summary and "skipped: not installed" in summary
    assert summary.splitlines()[-2].startswith("target")


@pytest.mark.timeout(180)
def test_a_tiny_whole_run(capsys: pytest.CaptureFixture[str]) -> None:
    quick = "--idle 1 --settle 0 --load-seconds 1 --queued 2000 --later 0"
    code = footprint.main(
        [*quick.split(), "--install", "plain", "--isolation", "process", "--no-peer"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "processes with cryptography loaded: none" in out
    summary = out[out.index("summary") :]
    assert "agentbus plain, process" in summary
    assert "1,000/1,000 delivered" in out and "2,000 queued (2,000)" in out


@pytest.mark.timeout(180)
def test_syslog_ng_footprint() -> None:
    if peer_syslog_ng.find_syslog_ng(install=False) is None:
        pytest.skip("syslog-ng with the http module is not installed")
    r = peer_syslog_ng.run_footprint(idle=1, seconds=1, queued=2000, later=0, settle=0)
    assert r["idle"]["total"]["processes"] == 1 and r["idle"]["total"]["pss_mb"] > 0
    assert r["load"]["delivered"] == 1000 and r["load"]["per_1000"] > 0
    assert [p[1] for p in r["queued"]["points"]][-2:] == [2000, 2000]
