"""`agentbus ar list|run` and the [active_response] section, as an operator uses them."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import tomli_w

from active_response.message import Request
from active_response.settings import load
from active_response.store import Store
from core.config import ConfigError
from tests.fixtures.run import clean_env


@pytest.fixture
def config_file(tmp_path):
    programs = tmp_path / "programs"
    programs.mkdir(mode=0o755)
    path = tmp_path / "agentbus.toml"
    path.write_text(tomli_w.dumps({
        "agent": {"data_dir": str(tmp_path / "data"), "run_dir": str(tmp_path / "run"),
                  "server_url": "http://127.0.0.1:1"},
        "active_response": {"programs_dir": str(programs), "state_dir": str(tmp_path / "state"),
                            "enabled": ["firewall-drop"]},
    }))  # fmt: skip
    return path


def agentbus(*args):
    return subprocess.run(
        [sys.executable, "-m", "agent.main", *args], capture_output=True, text=True,
        env=clean_env(), timeout=60,
    )  # fmt: skip


def test_ar_run_is_a_dry_run_unless_applied(config_file):
    done = agentbus("ar", "run", "firewall-drop", "add", "--arg", "srcip=203.0.113.8",
                    "--config", str(config_file))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "running it with --dry-run" in done.stdout
    assert '"parameters":{"extra_args":[],"alert":{"data":{"srcip":"203.0.113.8"}}' in done.stdout
    assert "result: 0 dry run: would block 203.0.113.8 with" in done.stdout
    refused = agentbus("ar", "run", "firewall-drop", "add", "--arg", "srcip=example.com",
                       "--config", str(config_file))  # fmt: skip
    assert refused.returncode == 1
    assert (
        "result: 1 firewall-drop failed with code 2: refused: 'example.com' is not an IP"
        in refused.stdout
    )
    # the server's own address (agent.server_url) is protected here too
    own = agentbus("ar", "run", "firewall-drop", "add", "--arg", "srcip=127.0.0.1",
                   "--config", str(config_file))  # fmt: skip
    assert own.returncode == 1
    bad = agentbus("ar", "run", "../bin/sh", "add", "--config", str(config_file))
    assert bad.returncode == 1 and "not allowed: '../bin/sh' is not a program name" in bad.stderr


def test_ar_list_shows_programs_and_the_responses_in_force(config_file, tmp_path):
    _config, settings = load(str(config_file), environ={})
    store = Store(settings.state_dir)
    ends = time.time() + 3600
    store.schedule(
        Request("firewall-drop", alert={"data": {"srcip": "198.51.100.1"}}), "doc-1", ends, 10
    )
    store.close()
    done = agentbus("ar", "list", "--config", str(config_file))
    assert done.returncode == 0, done.stderr
    assert "firewall-drop" in done.stdout and "(enabled by name)" in done.stdout
    assert "responses in force (1):" in done.stdout
    assert "srcip=198.51.100.1" in done.stdout and "(in 35" in done.stdout


def test_the_section_is_checked_strictly(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[active_response]\nrun_timeout = "soon"\n')
    with pytest.raises(ConfigError, match="active_response.run_timeout"):
        load(str(path), environ={})
    path.write_text('[active_response]\nprogram_dir = "/x"\n')
    with pytest.raises(ConfigError, match="active_response.program_dir: unknown key"):
        load(str(path), environ={})
    path.write_text('[active_response]\nmax_output = "1KB"\n')
    _config, settings = load(str(path), environ={"AGENTBUS_ACTIVE_RESPONSE_RUN_TIMEOUT": "5s"})
    assert (settings.max_output, settings.run_timeout, settings.enabled) == (1024, 5.0, [])


def test_the_executor_refuses_a_commands_socket_others_could_replace(config_file, tmp_path):
    # a group member who may write the run dir could bind a commands socket of their own
    # while the agent is down and send this privileged executor commands
    run = tmp_path / "run"
    run.mkdir()
    os.chmod(run, 0o770)
    done = subprocess.run(
        [sys.executable, "-m", "active_response", "--config", str(config_file)],
        capture_output=True, text=True, env=clean_env(), timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"agent.run_dir {run} is mode 0770" in done.stderr
    assert not (tmp_path / "state").exists()  # refused before it wrote anything


def test_the_executor_refuses_a_state_dir_others_may_write(config_file, tmp_path):
    # whoever may write it could plant timed responses whose deletes the executor runs
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o777)
    done = subprocess.run(
        [sys.executable, "-m", "active_response", "--config", str(config_file)],
        capture_output=True, text=True, env=clean_env(), timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert "active_response.state_dir is mode 0777" in done.stderr
