"""An invalid key stops the agent's services with exit 3 and one clear line (issue 4).

The token manager raises ServerRejected (final, latched); the services must turn it into
exit 3 (comms/errors.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from comms.credentials import Credentials, save_credentials
from tests.fixtures.agent import EnrolledAgent
from tests.fixtures.refserver import REPO


def _with_a_wrong_key(enrolled_agent: EnrolledAgent, tmp_path: Path, run_dir: Path) -> Path:
    """Replace the agent's key by one the server does not know; returns a config file."""
    config, creds, server = enrolled_agent
    wrong = Credentials(uuid=creds.uuid, key="W" * 32, name=creds.name, server_url=server.url)
    save_credentials(config.data_dir, wrong)
    cfg = tmp_path / "agentbus.toml"
    agent = {"data_dir": str(config.data_dir), "run_dir": str(run_dir), "server_url": server.url}
    cfg.write_text(tomli_w.dumps({"agent": agent}))
    return cfg


@pytest.mark.timeout(60)
def test_commander_with_an_invalid_key_exits_3(
    enrolled_agent: EnrolledAgent, tmp_path: Path, run_dir: Path
) -> None:
    server = enrolled_agent.server
    cfg = _with_a_wrong_key(enrolled_agent, tmp_path, run_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.main", "commander", "--config", str(cfg)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.terminate()
        _, err = proc.communicate()
    assert proc.returncode == 3
    assert "Invalid key (HTTP 401)" in err.splitlines()[-1]
    assert server.request_count(path="/api/v1/authentication", status=401) == 1


@pytest.mark.timeout(90)
def test_forwarder_with_an_invalid_key_exits_3(
    enrolled_agent: EnrolledAgent, tmp_path: Path, run_dir: Path
) -> None:
    server = enrolled_agent.server
    cfg = _with_a_wrong_key(enrolled_agent, tmp_path, run_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.main", "forwarder", "--config", str(cfg)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # one event, so the forwarder has something to send and must authenticate
        sent = subprocess.run(
            [sys.executable, "-m", "agent.main", "send", "--config", str(cfg), "--module",
             "app", "--collector", "c", '{"msg": "hello"}'],
            cwd=REPO, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.terminate()
        _, err = proc.communicate()
    assert proc.returncode == 3
    assert "Invalid key (HTTP 401)" in err.splitlines()[-1]
    assert server.request_count(path="/api/v1/authentication", status=401) == 1
