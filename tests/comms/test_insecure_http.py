"""A plain ``http://`` server URL to a host other than loopback is refused before anything
is sent (the key, the tokens and the enrollment password would travel in clear), unless
``[agent] allow_insecure_http = true``, which warns once."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from comms.api import ServerClient
from comms.credentials import Credentials
from comms.enroll import EnrollRequest, enroll
from comms.errors import InsecureServerURL
from comms.server_url import check_server_url, is_loopback
from comms.tokens import TokenManager
from tests.comms.helpers import captured_logs, tcp_server
from tests.fixtures.refserver import REPO, RefServer


def _creds(url: str) -> Credentials:
    return Credentials(uuid="0190a6d2-0000-4000-8000-0000000000ee", key="K" * 32, name="h",
                       server_url=url)  # fmt: skip


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP port on every address that records whatever a client sends to it."""
    got: list[bytes] = []

    def record(conn: socket.socket) -> None:
        conn.settimeout(1)
        try:
            got.append(conn.recv(65536))
        except OSError:
            pass
        conn.close()

    with tcp_server("0.0.0.0", record) as port:
        yield port, got


def _non_loopback_address() -> str:
    """An address of this host that is not loopback (the tests need one to aim at)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: it only picks the route
        address = str(probe.getsockname()[0])
    except OSError:
        pytest.skip("this host has no non-loopback IPv4 address")
    finally:
        probe.close()
    if is_loopback(address):
        pytest.skip("this host has no non-loopback IPv4 address")
    return address


def test_services_refuse_plain_http_to_another_host_and_send_nothing(make_config, listener) -> None:
    port, got = listener
    url = f"http://{_non_loopback_address()}:{port}"
    config = make_config({"agent": {"server_url": url}})
    with pytest.raises(InsecureServerURL, match=r"allow_insecure_http") as info:
        tokens = TokenManager(config, _creds(url), boot_id="b")
        ServerClient(config, tokens).get_commands(1)
    assert info.value.exit_code == 2
    assert "[agent] server_url" in str(info.value) and url in str(info.value)
    # The key never left: nothing reached the port.
    assert got == []


def test_the_enrolled_url_is_checked_too(make_config) -> None:
    config = make_config()  # the packaged server_url: the enrolled one is used
    with pytest.raises(InsecureServerURL, match="the enrolled server URL http://10.1.2.3"):
        TokenManager(config, _creds("http://10.1.2.3:27000"), boot_id="b")


def test_enrollment_refuses_before_sending_the_password(make_config, listener) -> None:
    port, got = listener
    url = f"http://{_non_loopback_address()}:{port}"
    request = EnrollRequest(enroll_url=url, user="wazuh", password="s3cret-pw", name="h")
    with pytest.raises(InsecureServerURL, match="--enroll-url"):
        enroll(make_config(), request, facts={})
    assert got == []


def test_allowed_it_works_and_warns_once_per_process(make_config, listener) -> None:
    port, got = listener
    url = f"http://{_non_loopback_address()}:{port}"
    config = make_config({"agent": {"server_url": url, "allow_insecure_http": True}})
    with captured_logs() as lines:
        for _ in range(3):
            TokenManager(config, _creds(url), boot_id="b")
    warned = [line for line in lines if "plain http" in line]
    assert len(warned) == 1 and "allow_insecure_http = true" in warned[0]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:27000",
        "http://127.8.9.10:27000",
        "http://localhost:27000",
        "http://[::1]:27000",
        "https://10.1.2.3:27000",
        "https://server.example:27000",
    ],
)
def test_loopback_and_https_are_allowed_silently(make_config, url: str) -> None:
    config = make_config()
    with captured_logs() as lines:
        assert check_server_url(url, config) == url
    assert not [line for line in lines if "plain http" in line]


def test_register_refuses_with_one_line_naming_the_key(
    refserver: RefServer, tmp_path: Path, run_dir: Path
) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text(f'[agent]\ndata_dir = "{tmp_path / "data"}"\nrun_dir = "{run_dir}"\n')
    cmd = [sys.executable, "-m", "agent.main", "register", "--config", str(cfg),
           "--enroll-url", refserver.url, "--connect-url", "http://10.1.2.3:27000",
           "--user", refserver.user, "--password", "-"]  # fmt: skip
    done = subprocess.run(cmd, input=refserver.password + "\n", capture_output=True,
                          text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "--connect-url http://10.1.2.3:27000 is plain http" in done.stderr
    assert "[agent] allow_insecure_http" in done.stderr
    # Refused before the login: the server saw no enrollment at all.
    assert refserver.agents() == []
    assert refserver.request_count(path="/security/user/authenticate") == 0


@pytest.mark.timeout(30)
def test_the_commander_refuses_to_start(make_config) -> None:  # type: ignore[no-untyped-def]
    """A start-up error is raised once what was opened is released; the CLI prints it as one
    line and exits with its code (2)."""
    from commander.service import Commander
    from comms.credentials import save_credentials

    config = make_config({"agent": {"server_url": "http://10.1.2.3:27000"}})
    save_credentials(config.data_dir, _creds("http://10.1.2.3:27000"))
    with pytest.raises(InsecureServerURL, match=r"\[agent\] allow_insecure_http") as info:
        Commander(config).run()
    assert info.value.exit_code == 2
