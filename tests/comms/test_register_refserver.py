"""`agentbus register` end to end against the reference server over real HTTP."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import uuid6

from agent.main import main
from comms.credentials import load_credentials
from tests.fixtures.refserver import REPO, RefServer


@pytest.fixture
def config_file(tmp_path: Path, run_dir: Path) -> Path:
    path = tmp_path / "agentbus.toml"
    path.write_text(
        f'[agent]\ndata_dir = "{tmp_path / "data"}"\nrun_dir = "{run_dir}"\n'
        f'connect_timeout = "3s"\n'
    )
    return path


@pytest.fixture
def register(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """Run ``agentbus register`` in-process: (exit code, stdout, stderr)."""

    def run(server: RefServer | None, *extra: str, url: str | None = None) -> tuple[int, str, str]:
        argv = ["register", "--config", str(config_file)]
        if server is not None:
            argv += ["--enroll-url", url or server.url, "--user", server.user,
                     "--password", server.password, "--connect-url", server.url]  # fmt: skip
        code = main([*argv, *extra])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def data_dir(config_file: Path) -> Path:
    return config_file.parent / "data"


def test_happy_path(refserver: RefServer, register, config_file: Path) -> None:  # type: ignore[no-untyped-def]
    # The default server is strict like Wazuh 6.0: v4 ids only. The v7 is refused, the v4
    # enrolled at once, and one line says so.
    code, out, err = register(refserver, "--name", "web-01")
    assert code == 0, err
    creds = load_credentials(data_dir(config_file))
    assert uuid6.UUID(creds.uuid).version == 4
    assert err.count("\n") == 1
    assert err.startswith(
        "agentbus: note: the server accepts only UUID v4 agent ids (it refused v7 "
    )
    assert err.endswith(f"); enrolled with v4 id {creds.uuid} instead\n")
    assert out.startswith(f"enrolled web-01 as {creds.uuid}; comms URL {refserver.url}")
    assert len(creds.key) == 32 and creds.key.isalnum()
    assert creds.server_url == refserver.url and creds.groups == ()
    [agent] = refserver.agents()  # the refused v7 left nothing behind
    assert (agent["id"], agent["name"]) == (creds.uuid, "web-01")
    assert refserver.request_count(path="/agents", method="POST", status=400) == 1
    assert refserver.request_count(path="/security/user/authenticate") == 1
    # the key the server stored works: the comms API authenticates it
    from comms.tokens import TokenManager
    from core.config import load_config

    TokenManager(load_config(config_file), creds).token()
    assert refserver.auth_count() == 1


def test_a_server_that_allows_v7_keeps_the_v7_id(  # type: ignore[no-untyped-def]
    refserver_factory, register, config_file: Path
) -> None:
    server = refserver_factory(extra_args=["--allow-uuid7"])
    code, out, err = register(server, "--name", "web-01")
    assert (code, err) == (0, "")
    creds = load_credentials(data_dir(config_file))
    assert uuid6.UUID(creds.uuid).version == 7
    assert [a["id"] for a in server.agents()] == [creds.uuid]
    assert server.request_count(path="/agents", method="POST") == 1


@pytest.mark.parametrize("allow_uuid7", [False, True])
def test_uuid_version_4_is_pinned(  # type: ignore[no-untyped-def]
    refserver_factory, register, config_file: Path, allow_uuid7: bool
) -> None:
    server = refserver_factory(extra_args=["--allow-uuid7"] if allow_uuid7 else [])
    code, _, err = register(server, "--uuid-version", "4")
    assert (code, err) == (0, "")
    creds = load_credentials(data_dir(config_file))
    assert uuid6.UUID(creds.uuid).version == 4
    assert server.request_count(path="/agents", method="POST") == 1


def test_uuid_version_7_is_pinned_where_allowed(  # type: ignore[no-untyped-def]
    refserver_factory, register, config_file: Path
) -> None:
    server = refserver_factory(extra_args=["--allow-uuid7"])
    code, _, err = register(server, "--uuid-version", "7")
    assert (code, err) == (0, "")
    assert uuid6.UUID(load_credentials(data_dir(config_file)).uuid).version == 7


def test_a_pinned_v7_refused_is_exit_3_without_fallback(
    refserver: RefServer, register, config_file: Path
) -> None:  # type: ignore[no-untyped-def]
    code, out, err = register(refserver, "--uuid-version", "7")
    assert code == 3 and out == "" and err.count("\n") == 1
    assert err.startswith("agentbus: the server refused the agent's UUID v7 id: '")
    assert "is not a 'uuid4' - 'id' (HTTP 400)" in err
    assert err.rstrip().endswith("use --uuid-version 4, or leave the flag out")
    assert refserver.agents() == []
    assert refserver.request_count(path="/agents", method="POST") == 1
    assert not (data_dir(config_file) / "credentials.json").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--name", "web 01"], "agentbus: the agent name 'web 01' is not valid: ' ' not allowed"),
        (["--name", "a/b"], "agentbus: the agent name 'a/b' is not valid: '/' not allowed"),
    ],
)
def test_a_name_the_server_would_refuse_is_exit_2_before_any_request(
    refserver: RefServer, register, extra: list[str], message: str
) -> None:  # type: ignore[no-untyped-def]
    code, out, err = register(refserver, *extra)
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1
    assert refserver.request_count(path="/security/user/authenticate") == 0
    assert refserver.request_count(path="/agents") == 0


def test_an_unknown_uuid_version_is_exit_2(  # type: ignore[no-untyped-def]
    refserver: RefServer, register, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:  # argparse's own exit, before run()
        register(refserver, "--uuid-version", "5")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("agentbus: argument --uuid-version: invalid choice: 5")
    assert refserver.request_count(path="/security/user/authenticate") == 0


def test_a_hostname_that_is_no_valid_name_needs_the_flag(  # type: ignore[no-untyped-def]
    refserver: RefServer, register, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "build box")
    code, _, err = register(refserver)
    assert code == 2
    assert err == (
        "agentbus: the host name 'build box' is not a valid agent name: ' ' not allowed "
        "(only letters, digits, '_', '-', '.', '%'); give a name with --name\n"
    )
    assert refserver.request_count(path="/security/user/authenticate") == 0
    assert register(refserver, "--name", "build-box")[0] == 0


def test_file_modes(refserver: RefServer, register, config_file: Path) -> None:  # type: ignore[no-untyped-def]
    old = os.umask(0o022)
    try:
        assert register(refserver)[0] == 0
    finally:
        os.umask(old)
    d = data_dir(config_file)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / "credentials.json").stat().st_mode) == 0o600
    assert sorted(p.name for p in d.iterdir()) == ["credentials.json"]


def test_default_name_is_the_hostname(refserver: RefServer, register, config_file: Path) -> None:  # type: ignore[no-untyped-def]
    assert register(refserver)[0] == 0
    assert load_credentials(data_dir(config_file)).name == socket.gethostname()


def test_wrong_password_is_exit_3_with_one_line(
    refserver: RefServer, register, config_file: Path
) -> None:  # type: ignore[no-untyped-def]
    code, out, err = register(refserver, "--password", "not-the-password")
    assert code == 3 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("agentbus: enrollment login refused: wrong user or password")
    assert "not-the-password" not in err
    assert not (data_dir(config_file) / "credentials.json").exists()
    assert refserver.agents() == []


def test_a_throttled_login_says_so_and_when_to_retry(
    refserver_factory, register, config_file: Path
) -> None:  # type: ignore[no-untyped-def]
    server = refserver_factory(failures_per_minute=1)
    assert register(server, "--password", "guess")[0] == 3  # the one failure allowed
    code, out, err = register(server)  # now even the right password waits its turn
    assert code == 3 and out == "" and err.count("\n") == 1
    assert "is limiting failed logins" in err and "retry in" in err
    assert "wrong user or password" not in err
    assert not (data_dir(config_file) / "credentials.json").exists()


def test_duplicate_registration_is_refused(
    refserver: RefServer, register, config_file: Path
) -> None:  # type: ignore[no-untyped-def]
    assert register(refserver, "--name", "first")[0] == 0
    before = (data_dir(config_file) / "credentials.json").read_bytes()
    code, out, err = register(refserver, "--name", "second")
    assert code == 2
    assert err.startswith("agentbus: this agent is already enrolled as first (")
    assert err.rstrip().endswith("use --force to enroll again") and err.count("\n") == 1
    assert (data_dir(config_file) / "credentials.json").read_bytes() == before
    assert [a["name"] for a in refserver.agents()] == ["first"]


def test_force_enrolls_again_and_drops_the_old_token(
    refserver: RefServer, register, config_file: Path
) -> None:  # type: ignore[no-untyped-def]
    from comms.tokens import TokenManager
    from core.config import load_config

    assert register(refserver, "--name", "first")[0] == 0
    first = load_credentials(data_dir(config_file))
    TokenManager(load_config(config_file), first).token()
    assert (data_dir(config_file) / "token.json").exists()
    code, out, err = register(refserver, "--name", "second", "--force")
    assert code == 0, err
    second = load_credentials(data_dir(config_file))
    assert second.uuid != first.uuid and second.key != first.key and second.name == "second"
    assert not (data_dir(config_file) / "token.json").exists()
    assert sorted(a["name"] for a in refserver.agents()) == ["first", "second"]
    TokenManager(load_config(config_file), second).token()
    assert refserver.auth_count() == 2


def test_given_key_is_used(refserver: RefServer, register, config_file: Path) -> None:  # type: ignore[no-untyped-def]
    key = "Abcdefghij0123456789KLMNOPQRSTuv"
    assert register(refserver, "--key", key)[0] == 0
    assert load_credentials(data_dir(config_file)).key == key


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--name", "n" * 129], "agentbus: the agent name is 129 characters long; at most 128"),
        (["--key", "tooshort"], "agentbus: the key must be exactly 32 characters"),
    ],
)
def test_bad_name_or_key_is_exit_2(
    refserver: RefServer, register, extra: list[str], message: str
) -> None:  # type: ignore[no-untyped-def]
    code, _, err = register(refserver, *extra)
    assert code == 2 and err.startswith(message) and err.count("\n") == 1
    assert refserver.agents() == []


def test_server_unreachable_is_exit_3(refserver: RefServer, register) -> None:  # type: ignore[no-untyped-def]
    refserver.stop()
    code, _, err = register(refserver)
    assert code == 3
    assert err == f"agentbus: cannot reach {refserver.url}: connection refused\n"


def test_tls_failure_is_exit_3(https_server, register) -> None:  # type: ignore[no-untyped-def]
    # a private CA the system does not trust, and a certificate for another name
    url, _ = https_server
    code, _, err = register(None, "--enroll-url", url, "--user", "u", "--password", "p")
    assert code == 3 and err.count("\n") == 1
    assert err.startswith(f"agentbus: TLS check of {url} failed: ")
    assert "unable to get local issuer certificate" in err


def test_password_from_stdin_and_real_exit_codes(refserver: RefServer, config_file: Path) -> None:
    """The installed command line, as an operator runs it (a real process)."""
    cmd = [sys.executable, "-m", "agent.main", "register", "--config", str(config_file),
           "--enroll-url", refserver.url, "--user", refserver.user, "--password", "-",
           "--connect-url", refserver.url]  # fmt: skip
    done = subprocess.run(cmd, input=refserver.password + "\n", capture_output=True, text=True,
                          cwd=REPO, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    again = subprocess.run(cmd, input=refserver.password + "\n", capture_output=True, text=True,
                           cwd=REPO, timeout=60)  # fmt: skip
    assert again.returncode == 2
    assert again.stderr.count("\n") == 1 and "already enrolled" in again.stderr
    doc = json.loads((data_dir(config_file) / "credentials.json").read_text())
    assert set(doc) >= {"uuid", "key", "name", "groups", "server_url"}


def test_self_signed_server_full_mode_fails_then_its_ca_file_works(  # type: ignore[no-untyped-def]
    refserver_factory, register, config_file: Path, tmp_path: Path, run_dir: Path
) -> None:
    server = refserver_factory(self_signed=True)
    code, _, err = register(server, "--verification-mode", "full")
    assert code == 3 and err.count("\n") == 1
    assert err.startswith(f"agentbus: TLS check of {server.url} failed: ")
    assert "self-signed certificate" in err
    cfg = tmp_path / "tls.toml"
    cfg.write_text(
        f'[agent]\ndata_dir = "{tmp_path / "tlsdata"}"\nrun_dir = "{run_dir}"\n'
        f'ca_file = "{server.ca_file}"\n'
    )
    argv = ["register", "--config", str(cfg), "--enroll-url", server.url, "--user",
            server.user, "--password", server.password, "--connect-url", server.url]  # fmt: skip
    assert main(argv) == 0


def test_verification_none_enrolls_and_notes_the_services_mode(refserver_factory, register) -> None:  # type: ignore[no-untyped-def]
    server = refserver_factory(self_signed=True)
    code, out, err = register(server, "--verification-mode", "none")
    assert code == 0 and out.startswith("enrolled ")
    assert "note: the services check TLS with agent.verification_mode = 'full'" in err


def test_password_pipe_reads_one_line_only(refserver: RefServer, config_file: Path) -> None:
    cmd = [sys.executable, "-m", "agent.main", "register", "--config", str(config_file),
           "--enroll-url", refserver.url, "--user", refserver.user, "--password", "-",
           "--connect-url", refserver.url]  # fmt: skip
    # the first line, newline stripped, is the password; what follows is not read into it
    done = subprocess.run(cmd, input=refserver.password + "\nextra line\n", capture_output=True,
                          text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_password_help_says_a_value_is_visible_in_ps(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["register", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "'-' reads one line from stdin" in text
    assert "visible to other local users in ps" in text
