"""Collectors as stand-alone processes: ``agentbus <name> --config F``."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from tests.fixtures.common import wait_for


def _write_config(path: Path, config: Any, collectors: dict[str, Any]) -> str:
    raw = {
        "agent": {"data_dir": config.agent.data_dir, "run_dir": config.agent.run_dir},
        "log": {"level": "INFO"},
        "collectors": collectors,
    }
    path.write_text(tomli_w.dumps(raw))
    return str(path)


def _start(name: str, config_file: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent.main", name, "--config", config_file, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str], within: float) -> tuple[int, float, str]:
    """SIGTERM; returns the exit code, how long it took and what it wrote on stderr."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, time.monotonic() - started, err


@pytest.mark.timeout(90)
def test_logcollector_process_feeds_the_server_and_stops_on_sigterm(make_config, sink, tmp_path):
    log = tmp_path / "app.log"
    log.write_text("".join(f"proc {i}\n" for i in range(500)))
    config = make_config({})
    config_file = _write_config(
        tmp_path / "agentbus.toml",
        config,
        {"logcollector": {"paths": [str(log)], "read_from": "start", "poll_interval": "100ms"}},
    )
    proc = _start("logcollector", config_file)
    try:
        wait_for(lambda: sink.count() >= 500, timeout=30)
    finally:
        code, took, err = _stop(proc, within=10)
    assert code == 0, err
    assert took < 5
    assert sorted(d["event"]["original"] for d in sink.data()) == sorted(
        f"proc {i}" for i in range(500)
    )


@pytest.mark.timeout(60)
def test_stops_promptly_while_the_forwarder_is_absent(make_config, tmp_path):
    log = tmp_path / "app.log"
    log.write_text("waiting\n")
    config = make_config({})
    config_file = _write_config(
        tmp_path / "agentbus.toml",
        config,
        {"logcollector": {"paths": [str(log)], "read_from": "start"}},
    )
    proc = _start("logcollector", config_file)
    # It is up (its control socket exists) and retrying against a missing forwarder.
    wait_for(lambda: (Path(config.agent.run_dir) / "control-logcollector.sock").exists(), 20)
    code, took, err = _stop(proc, within=10)
    assert code == 0 and took < 5, err


@pytest.mark.timeout(60)
def test_fim_once_as_a_script(make_config, sink, tmp_path):
    watched = tmp_path / "w"
    watched.mkdir()
    (watched / "f").write_text("x\n")
    config = make_config({})
    config_file = _write_config(
        tmp_path / "agentbus.toml", config, {"fim": {"paths": [str(watched)]}}
    )
    done = subprocess.run(
        [sys.executable, "-m", "agent.main", "fim", "--config", config_file, "--once"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    wait_for(lambda: sink.count() >= 1)
    (event,) = sink.snapshot()
    assert event["module"] == "fim" and event["operation"] == "create"
    assert event["data"]["file"]["path"] == str(watched / "f")
