"""A warning is said once per process, and a command's log lines keep their place in its output."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.fixtures.refserver import REPO
from tests.fixtures.run import clean_env


def _python(code: str, tmp_path: Path) -> str:
    """stdout and stderr of ``code`` in a fresh interpreter, both into one pipe (as
    ``cmd > log 2>&1`` or a CI log gets them)."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        # stdout buffered as a user's shell has it (a test runner may set it unbuffered)
        env={k: v for k, v in clean_env().items() if k != "PYTHONUNBUFFERED"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stdout
    return out.stdout


def test_tls_off_is_said_once_per_process_however_many_sessions(tmp_path: Path) -> None:
    # Each service makes two sessions (its API client, its token manager), and with the
    # services as threads one process hosts the forwarder and the commander: four.
    out = _python(
        f"""
        from core.config import LogSection, config_from_dict
        from core.logs import setup_logging
        from comms.http import make_session

        setup_logging(LogSection(level="INFO"), "agent")
        config = config_from_dict({{"agent": {{"verification_mode": "none",
                                               "data_dir": "{tmp_path}/data"}}}})
        sessions = [make_session(config) for _ in range(4)]
        assert all(s.verify is False for s in sessions)
        """,
        tmp_path,
    )
    assert out.count("TLS verification is OFF") == 1, out


def test_the_token_lock_warning_is_said_once_per_process(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    out = _python(
        f"""
        import requests_mock
        from core.config import LogSection, config_from_dict
        from core.logs import setup_logging
        from comms.credentials import Credentials
        from comms.tokens import TokenManager
        from tests.comms.helpers import make_jwt

        setup_logging(LogSection(level="INFO"), "agent")
        config = config_from_dict({{"agent": {{"data_dir": "{blocker}/data",
                                               "server_url": "http://127.0.0.1:1"}}}})
        creds = Credentials(uuid="3b241101-e2bb-4255-8caf-4136c566a962", key="k" * 32,
                            name="t", server_url="http://127.0.0.1:1")
        with requests_mock.Mocker() as m:
            m.post("http://127.0.0.1:1/api/v1/authentication", json={{"token": make_jwt()}})
            for _ in range(2):  # the forwarder's and the commander's
                TokenManager(config, creds).token()
        """,
        tmp_path,
    )
    assert out.count("cannot open the token lock") == 1, out


def test_a_log_line_never_overtakes_what_the_command_printed_before(tmp_path: Path) -> None:
    out = _python(
        """
        from loguru import logger
        from core.config import LogSection
        from core.logs import setup_logging

        setup_logging(LogSection(level="INFO"), "register")
        print("first: the command's own output")
        logger.warning("second: a warning")
        print("third: more output")
        """,
        tmp_path,
    )
    assert out.index("first:") < out.index("second:") < out.index("third:"), out
