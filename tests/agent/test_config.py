"""Configuration: defaults, strict checking with clear messages, environment overrides."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from core.config import (
    DEFAULT_CONFIG_FILE,
    ConfigError,
    config_from_dict,
    load_config,
    parse_duration,
    parse_size,
)


def agentbus(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBUS_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "agent.main", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=full_env,
    )


def test_packaged_default_file_documents_exactly_the_defaults():
    from_file = load_config(DEFAULT_CONFIG_FILE, environ={})
    assert dataclasses.replace(from_file, source="<defaults>") == config_from_dict({})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[forwarder]\nbatch_max_byte = 5\n", "forwarder.batch_max_byte: unknown key"),
        ("[nosuch]\nx = 1\n", "nosuch: unknown key"),
        ('[forwarder]\nbatch_interval = "soon"\n', "forwarder.batch_interval: expected a duration"),
        ('[forwarder]\nmax_queue_bytes = "lots"\n', "forwarder.max_queue_bytes: expected a size"),
        ('[forwarder]\nwhen_full = "explode"\n', "forwarder.when_full: 'explode' is not one of"),
        (
            '[commander]\nagent_executor = "maybe"\n',
            "commander.agent_executor: expected true or false",
        ),
        ("[bus]\nhwm = -4\n", "bus.hwm: must not be negative"),
        ("[agent]\nserver_url = 5\n", "agent.server_url: expected a string"),
        ("[collectors.fim]\npaths = [1, 2]\n", "collectors.fim.paths: expected a list of strings"),
        ("forwarder = 3\n", "forwarder must be a table"),
        ("[agent\n", "is not valid TOML"),
    ],
)
def test_config_problems_name_the_key(tmp_path, text, message):
    path = tmp_path / "agentbus.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert message in str(info.value)


def test_cli_turns_a_config_problem_into_exit_2_and_one_line(tmp_path):
    path = tmp_path / "agentbus.toml"
    path.write_text('[forwarder]\nbatch_interval = "soon"\n')
    result = agentbus("send", "--config", str(path), "--module", "m", "--collector", "c", "{}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "forwarder.batch_interval: expected a duration" in lines[0]


def test_cli_unreadable_config_file_is_exit_2(tmp_path):
    result = agentbus(
        "send",
        "--config",
        str(tmp_path / "missing.toml"),
        "--module",
        "m",
        "--collector",
        "c",
        "{}",
    )
    assert result.returncode == 2
    assert "cannot read config file" in result.stderr


def test_agentbus_config_variable_is_used_when_no_flag(tmp_path):
    path = tmp_path / "agentbus.toml"
    path.write_text("[bus]\nhwm = nope\n")
    result = agentbus(
        "send", "--module", "m", "--collector", "c", "{}", env={"AGENTBUS_CONFIG": str(path)}
    )
    assert result.returncode == 2
    assert str(path) in result.stderr


def test_environment_overrides_keys_of_every_shape(tmp_path):
    path = tmp_path / "agentbus.toml"
    path.write_text('[forwarder]\nbatch_interval = "1s"\n')
    config = load_config(
        path,
        environ={
            "AGENTBUS_FORWARDER_BATCH_INTERVAL": "250ms",
            "AGENTBUS_FORWARDER_BATCH_MAX_BYTES": "2MB",
            "AGENTBUS_COLLECTORS_FIM_ENABLED": "false",
            "AGENTBUS_COLLECTORS_LOGCOLLECTOR_PATHS": '["/a.log", "/b/*.log"]',
            "AGENTBUS_AGENT_RUN_DIR": "/tmp/x",
            "AGENTBUS_BUS_HWM": "77",
        },
    )
    assert config.forwarder.batch_interval == 0.25
    assert config.forwarder.batch_max_bytes == 2 * 1024 * 1024
    assert config.collectors.fim.enabled is False
    assert config.collectors.logcollector.paths == ["/a.log", "/b/*.log"]
    assert config.agent.run_dir == "/tmp/x"
    assert config.bus.hwm == 77
    assert config.source == str(path)


def test_environment_variable_with_a_typo_is_an_error(tmp_path):
    with pytest.raises(
        ConfigError, match="AGENTBUS_FORWARDER_BATCH_INTERVALL names no configuration key"
    ):
        load_config(DEFAULT_CONFIG_FILE, environ={"AGENTBUS_FORWARDER_BATCH_INTERVALL": "1s"})
    with pytest.raises(ConfigError, match="forwarder.batch_interval: expected a duration"):
        load_config(DEFAULT_CONFIG_FILE, environ={"AGENTBUS_FORWARDER_BATCH_INTERVAL": "later"})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("11m", 660),
        ("2h", 7200),
        ("1d", 86400),
        (5, 5.0),
        ("1.5s", 1.5),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("256KB", 262144),
        ("1MB", 1048576),
        ("1mib", 1048576),
        ("2GB", 2 * 1024**3),
        (100, 100),
        ("10", 10),
    ],
)
def test_sizes(text, size):
    assert parse_size(text) == size


def test_to_toml_round_trips(tmp_path):
    from core.config import to_toml

    config = config_from_dict(
        {"forwarder": {"batch_interval": "250ms"}, "collectors": {"fim": {"paths": ["/x"]}}}
    )
    path = tmp_path / "out.toml"
    path.write_text(to_toml(config))
    assert dataclasses.replace(load_config(path, environ={}), source="<defaults>") == config
