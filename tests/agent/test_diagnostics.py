"""`agentbus diagnostics`: one archive for support, that tar opens, with no secret in it."""

from __future__ import annotations

import argparse
import gzip
import json
import stat
import subprocess
import tarfile
from pathlib import Path

import zmq
from loguru import logger

from agent.cli import diagnostics
from core.config import Config, config_from_dict, to_toml
from core.logs import setup_logging
from core.service import Service
from tests.fixtures.common import wait_for

#: secrets planted where the agent keeps them; none may reach the archive
KEY = "PlantedAgentKey0123456789abcdefZ"  # credentials.json: 32 characters
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJ1dWlkIjoicGxhbnRlZCJ9.PlantedSignature0123456789"
URL_PASSWORD = "PlantedUrlPassw0rd"


class _Agent(Service):
    """Stands for the supervisor: a real service with real control sockets."""

    name = "agent"


def _plant(tmp_path: Path, run_dir: Path) -> tuple[Path, Config, str]:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    curve_public, curve_secret = zmq.curve_keypair()
    key_file = tmp_path / "bus.key"
    key_file.write_bytes(curve_public + b" " + curve_secret + b"\n")
    key_file.chmod(0o600)
    raw = {
        "agent": {
            "data_dir": str(data),
            "run_dir": str(run_dir),
            "server_url": f"https://bob:{URL_PASSWORD}@127.0.0.1:1",
        },
        "bus": {"curve_secret_key_file": str(key_file)},
        "log": {"level": "INFO"},
    }
    config_file = tmp_path / "agentbus.toml"
    config_file.write_text(to_toml(config_from_dict(raw)))
    (data / "credentials.json").write_text(
        json.dumps({"uuid": "3b241101-e2bb-4255-8caf-4136c566a962", "key": KEY, "name": "t"})
    )
    (data / "token.json").write_text(json.dumps({"token": TOKEN, "lifetime": 900}))
    for name in ("credentials.json", "token.json"):
        (data / name).chmod(0o600)
    return config_file, config_from_dict(raw), curve_secret.decode()


def _archive(config_file: Path, output: Path, lines: int = 50) -> int:
    args = argparse.Namespace(config=str(config_file), output=str(output), lines=lines)
    return diagnostics.run(args)


def test_the_archive_holds_what_support_needs_and_no_secret(
    tmp_path: Path, run_dir: Path, run_service
) -> None:
    config_file, config, curve_secret = _plant(tmp_path, run_dir)
    setup_logging(config.log, "agent")
    service = run_service(_Agent(config))
    wait_for(service.service.ready.is_set)
    # A line that names the secrets (the agent's own logs never do): the scrub must catch it.
    logger.info("marker line; key {} token {} curve {}", KEY, TOKEN, curve_secret)

    output = tmp_path / "out" / "diag.tar.gz"
    output.parent.mkdir()
    assert _archive(config_file, output) == 0

    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    listed = subprocess.run(["tar", "-tzf", str(output)], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    with tarfile.open(output) as tar:
        files = {
            m.name.split("/", 1)[1]: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }
    expected = {"summary.txt", "version.json", "config.json", "status.json", "queues.json"}
    assert expected | {"errors.json", "logs/agent.log", "run-dir.txt", "data-dir.txt"} <= set(files)
    # the parts say what they should
    log = files["logs/agent.log"].decode()
    assert "marker line" in log and "[agent]" in log
    assert "control-agent.sock" in files["run-dir.txt"].decode()
    assert "srw" in files["run-dir.txt"].decode()  # the sockets' modes are shown
    assert "credentials.json" in files["data-dir.txt"].decode()
    values = json.loads(files["config.json"])["values"]
    assert values["agent.server_url"] == "https://bob:[REDACTED]@127.0.0.1:1"
    assert values["bus.curve_secret_key_file"].endswith("bus.key")  # a path is no secret
    assert json.loads(files["status.json"])["services"]["agent"]["up"] is True
    assert json.loads(files["version.json"])["agentbus"]

    # no secret anywhere: not in the members, not in the archive's own bytes
    secrets = [KEY, TOKEN, URL_PASSWORD, curve_secret, TOKEN.split(".")[2]]
    raw = gzip.decompress(output.read_bytes())
    for secret in secrets:
        assert secret.encode() not in raw, secret
        for name, content in files.items():
            assert secret.encode() not in content, (secret, name)


def test_without_a_running_agent_it_says_what_is_missing(
    tmp_path: Path, run_dir: Path, capsys
) -> None:
    config_file, _config, _curve = _plant(tmp_path, run_dir)
    output = tmp_path / "diag.tar.gz"
    assert _archive(config_file, output) == 0
    with tarfile.open(output) as tar:
        names = [m.name.split("/", 1)[1] for m in tar.getmembers()]
        summary = tar.extractfile(
            next(m for m in tar.getmembers() if m.name.endswith("summary.txt"))
        )
        text = summary.read().decode()  # type: ignore[union-attr]
    assert not any(n.startswith("logs/") for n in names)
    assert "the agent is not running" in text
    assert "the agent is not running" in capsys.readouterr().err
    assert KEY.encode() not in gzip.decompress(output.read_bytes())


def test_log_ring_is_served_per_service_and_bounded(tmp_path: Path, run_dir: Path) -> None:
    from core.logs import RING, RING_LINES, recent_lines

    _config_file, config, _curve = _plant(tmp_path, run_dir)
    setup_logging(config.log, "agent")
    RING.clear()
    for i in range(RING_LINES + 20):
        logger.info("line {}", i)
    lines = recent_lines("agent", RING_LINES + 100)
    assert len(lines) == RING_LINES
    assert lines[-1].endswith(f"line {RING_LINES + 19}")
    assert recent_lines("agent", 3)[0].endswith(f"line {RING_LINES + 17}")
    assert recent_lines("nobody-logged", 10) == []


def test_redaction_by_key_name() -> None:
    r = diagnostics.redact_value
    assert r("x.password", "hunter22") == "[REDACTED]"
    assert r("x.api_token", "abc") == "[REDACTED]"
    assert r("bus.curve_secret_key_file", "/etc/k") == "/etc/k"
    assert r("agent.server_url", "https://u:p4ss@h:1/x") == "https://u:[REDACTED]@h:1/x"
    assert r("collectors.logcollector.paths", ["/var/log/*.log"]) == ["/var/log/*.log"]
    assert r("forwarder.batch_max_bytes", 5) == 5
