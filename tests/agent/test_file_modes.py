"""Files and directories the agent writes: private whatever the umask.

Before: with a data dir made 0755 and the usual umask 022, the queue files, commands.db-wal
(command arguments), the log and the pid file were 0644, readable by every local user.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

from bus import Ingest, make_event
from collectors.logcollector.offsets import OffsetRow, OffsetStore
from collectors.state import StateStore
from commander.store import CommandStore
from core.config import ConfigError
from core.logs import setup_logging
from core.private_dirs import secure_agent_dirs
from forwarder.store import Store
from tests.fixtures.common import wait_for
from tests.fixtures.other_user import NOBODY, needs_root
from tests.fixtures.run import clean_env, write_config


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _modes(*roots: Path) -> dict[str, int]:
    """Every file and directory under ``roots`` (sockets left out) → its permission bits."""
    out: dict[str, int] = {}
    for root in roots:
        out[str(root)] = stat.S_IMODE(root.stat().st_mode)
        for path in root.rglob("*"):
            st = path.lstat()
            if not stat.S_ISSOCK(st.st_mode):
                out[str(path)] = stat.S_IMODE(st.st_mode)
    return out


def _too_open(modes: dict[str, int], *, dirs: int = 0o700) -> dict[str, str]:
    bad = {}
    for path, mode in modes.items():
        allowed = dirs if Path(path).is_dir() else 0o640
        if mode & ~allowed:
            bad[path] = f"{mode:04o}"
    return bad


def test_stores_and_log_are_private_under_umask_022(make_config, tmp_path, loose_umask):
    data = tmp_path / "state"
    config = make_config({"log": {"file": str(data / "agentbus.log")}})
    data.mkdir(mode=0o755)
    # A log file and a WAL left 0644 by an earlier run are narrowed too.
    (data / "agentbus.log").write_text("old line\n")
    (data / "commands.db-wal").write_bytes(b"")
    (data / "agentbus.log").chmod(0o644)

    commands = CommandStore(data / "commands.db")
    queue = Store(data / "queue", "stateless", max_bytes=1 << 20)
    (data / "collectors").mkdir(mode=0o700)
    offsets = OffsetStore(data / "collectors" / "logcollector.db")
    offsets.save(OffsetRow(1, 2, "/var/log/x", 10))
    state = StateStore(data / "collectors" / "fim.db")
    state.set_meta("uuid", "x")
    setup_logging(config.log, "test")
    logger.info("a line in the log file")
    try:
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data.rglob("*") if p.is_file()}
        assert {"commands.db", "commands.db-wal", "stateless.db", "agentbus.log"} <= set(files)
        assert any(name.endswith("-wal") for name in files if name.startswith("stateless"))
        assert {name: f"{mode:04o}" for name, mode in files.items() if mode != 0o600} == {}
    finally:
        commands.close()
        queue.close()
        offsets.close()
        state.close()
        logger.remove()


def test_a_loose_data_dir_of_ours_is_tightened_and_run_dir_keeps_its_group(make_config, tmp_path):
    config = make_config()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    config.data_dir.chmod(0o755)
    config.run_dir.chmod(0o775)
    secure_agent_dirs(config)
    assert stat.S_IMODE(config.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(config.run_dir.stat().st_mode) == 0o750  # group: in, not write


@needs_root
def test_a_loose_data_dir_of_another_user_is_refused(make_config, tmp_path):
    config = make_config()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    config.data_dir.chmod(0o755)
    os.chown(config.data_dir, NOBODY.pw_uid, NOBODY.pw_gid)
    with pytest.raises(ConfigError, match="owned by uid"):
        secure_agent_dirs(config)
    assert stat.S_IMODE(config.data_dir.stat().st_mode) == 0o755  # not ours to change

    # The same through `agentbus run`: one line, exit 2, before anything is started.
    path = write_config(config, tmp_path / "agent.toml")
    done = subprocess.run(
        [sys.executable, "-m", "agent.main", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(),
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("agentbus: agent.data_dir") and "owned by uid" in last


@pytest.mark.timeout(120)
def test_agent_run_under_umask_022_leaves_nothing_readable(
    enrolled_agent, agent_process, tmp_path, loose_umask
):
    config, _credentials, server = enrolled_agent
    config.data_dir.chmod(0o755)
    config.run_dir.chmod(0o755)
    log = config.data_dir / "agentbus.log"
    agent = agent_process(
        config,
        log={"file": str(log)},
        collectors={
            "logcollector": {"enabled": True, "paths": [str(log)]},
            "inventory": {"enabled": False},
            "fim": {"enabled": False},
        },
    )
    with Ingest(f"ipc://{config.agent.run_dir}/ingest.sock", timeout=10) as ingest:
        assert ingest.send([make_event("test", "modes", {"n": 1})]).ok
    wait_for(lambda: server.events(module="test"), timeout=30)
    wait_for(lambda: (config.data_dir / "collectors" / "logcollector.db").exists(), timeout=30)
    running = _modes(config.data_dir, config.run_dir)
    sockets = {
        p.name: stat.S_IMODE(p.stat().st_mode) for p in config.run_dir.iterdir() if p.is_socket()
    }
    assert agent.stop() == 0

    assert running[str(config.data_dir)] == 0o700  # tightened at start
    assert running[str(config.run_dir)] == 0o750  # the group keeps its way to the sockets
    assert any(p.endswith("stateless.db-wal") for p in running)
    assert any(p.endswith("commands.db-wal") for p in running)
    assert any(p.endswith("agentbus.pid") for p in running)
    del running[str(config.run_dir)]
    assert _too_open(running) == {}
    assert "ingest.sock" in sockets
    # bus sockets 0660 (the agent's group runs collectors); owner-only ones stay 0600
    assert {name: f"{mode:04o}" for name, mode in sockets.items() if mode & ~0o660} == {}
