"""`agentbus server --detach` returns once the server answers, `stop` ends it, and
`events --wait N` waits for the event a script has just sent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.common import wait_for
from tests.fixtures.refserver import REPO, free_port
from tests.fixtures.run import clean_env
from tests.refserver.helpers import enroll, stateless_pair


def agentbus(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.main", "server", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean_env(), "PYTHONPATH": str(REPO)},
    )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """The server's data dir; a server left running by a failed test is killed."""
    path = tmp_path / "srv"
    yield path
    pid_file = path / "server.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(90)
def test_detach_returns_ready_and_stop_ends_it(tmp_path: Path, data_dir: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out = agentbus("--detach", "--port", str(port), "--data-dir", "srv", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"ready on {url}" in out.stdout
    for name in ("server.log", "server.pid", "admin.token"):
        assert str(data_dir / name) in out.stdout
    pid = int((data_dir / "server.pid").read_text())
    assert _alive(pid)
    assert (data_dir / "server.log").stat().st_mode & 0o077 == 0

    # ready means ready: the very next command is answered, with the token found by itself
    listed = agentbus("agents", "--url", url, "--data-dir", "srv", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr

    # one server per data dir
    again = agentbus("--detach", "--port", str(free_port()), "--data-dir", "srv", cwd=tmp_path)
    assert again.returncode == 1 and f"runs already (pid {pid})" in again.stderr

    stopped = agentbus("stop", "--data-dir", "srv", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopped (pid {pid})" in stopped.stdout
    wait_for(lambda: not _alive(pid))
    assert not (data_dir / "server.pid").exists()
    gone = agentbus("stop", "--data-dir", "srv", cwd=tmp_path)
    assert gone.returncode == 1 and "no server started from" in gone.stderr


@pytest.mark.timeout(60)
def test_a_server_that_cannot_start_says_why(tmp_path: Path, data_dir: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = agentbus("--detach", "--port", str(port), "--data-dir", "srv", cwd=tmp_path)
    assert out.returncode != 0
    assert "cannot listen on" in out.stderr and "Address already in use" in out.stderr
    assert not (data_dir / "server.pid").exists()


@pytest.mark.timeout(90)
def test_events_wait_returns_once_the_event_arrives(tmp_path: Path, data_dir: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = agentbus("--detach", "--port", str(port), "--data-dir", "srv", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    try:
        where = ["--url", url, "--data-dir", "srv"]
        none = agentbus("events", *where, "--module", "myapp", "--wait", "0.5", cwd=tmp_path)
        assert none.returncode == 1 and none.stdout == ""
        assert "no matching event within 0.5s" in none.stderr
        assert agentbus("events", *where, "--module", "myapp", cwd=tmp_path).returncode == 0

        waiting = subprocess.Popen(
            [sys.executable, "-m", "agent.main", "server", "events", *where]
            + ["--module", "myapp", "--wait", "30"],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**clean_env(), "PYTHONPATH": str(REPO)},
        )
        agent = enroll(url)
        assert agent.post("stateless", stateless_pair("myapp", "cli")).status_code == 204
        stdout, stderr = waiting.communicate(timeout=30)
        assert waiting.returncode == 0, stderr
        assert '"module":"myapp"' in stdout and agent.id in stdout

        counted = agentbus("events", *where, "--count", "--wait", "5", cwd=tmp_path)
        assert counted.returncode == 0 and counted.stdout.strip() == "1"
    finally:
        agentbus("stop", "--data-dir", "srv", cwd=tmp_path)
