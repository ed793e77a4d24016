"""The reference server is safe to start: each test performs the attack over real HTTP (and as a
second local user) and asserts it does no harm, and that the legitimate path still works.

- the admin API needs its token (a local user without it queues nothing, revokes nothing);
- the token file is 0600, fresh at every start, and another user cannot read it;
- the default password is refused on a non-loopback bind; the password is in no argv and no
  start-up line;
- failed logins, agent keys and admin tokens are throttled per client address (429 with
  Retry-After, before any PBKDF2), successes never are, and the agent backs off on that 429.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from comms.errors import ServerRejected, ServerUnreachable
from comms.tokens import TokenManager
from refserver.admintoken import TokenFileError, client_token, new_token, write_token
from refserver.credentials import Password, default_refusal, is_loopback
from refserver.throttle import FailureThrottle
from tests.fixtures.other_user import needs_root, run_as_nobody
from tests.fixtures.refserver import REPO, RefServer, free_port
from tests.fixtures.run import clean_env
from tests.refserver.helpers import enroll

#: a second loopback address: Linux answers on all of 127.0.0.0/8, so a client can come
#: "from another address" without leaving the machine
OTHER = "127.0.0.2"


def _from(address: str, server: RefServer, method: str, path: str, **kw) -> tuple[int, dict, str]:
    """One request whose source address is ``address``: (status, headers, body)."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", server.port, timeout=10, source_address=(address, 0)
    )
    try:
        body = kw.get("body")
        headers = dict(kw.get("headers", {}))
        if isinstance(body, dict):
            body = json.dumps(body)
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    finally:
        conn.close()


def _serve(*args: str, env: dict[str, str], cwd: Path = REPO) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent.main", "server", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# -- the admin API needs its token ----------------------------------------------------------
def test_admin_calls_without_the_token_are_401_and_change_nothing(refserver_factory) -> None:
    refserver = refserver_factory(failures_per_minute=100)  # throttling is tested below
    agent = enroll(refserver.url)
    url = f"{refserver.url}/admin"
    command = {"agent_id": agent.id, "name": "restart"}
    attempts = [
        {},
        {"Authorization": "Bearer " + new_token()},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic " + base64.b64encode(b"wazuh:wazuh").decode()},
        {"Authorization": f"Bearer {refserver.admin_token}x"},
    ]
    for headers in attempts:
        r = requests.post(f"{url}/commands", json=command, headers=headers, timeout=10)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert requests.post(f"{url}/revoke-tokens", headers=headers, timeout=10).status_code == 401
        assert requests.get(f"{url}/agents", headers=headers, timeout=10).status_code == 401
    assert refserver.commands() == []  # nothing queued
    assert agent.poll(timeout=10).status_code == 408  # its token was not revoked either

    # the legitimate path: the token works
    good = {"Authorization": f"Bearer {refserver.admin_token}"}
    r = requests.post(f"{url}/commands", json=command, headers=good, timeout=10)
    assert r.status_code == 201
    [queued] = refserver.commands()
    assert queued["document_id"] == r.json()["document_ids"][0]
    assert refserver.stats()["auth_failures"] == {"admin": len(attempts) * 3}


def test_the_token_file_is_0600_and_new_at_every_start(refserver) -> None:
    mode = refserver.token_file.stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    for name in ("server.db", "keys/private.pem", "keys/public.pem"):  # umask 077
        assert refserver.data_dir.joinpath(name).stat().st_mode & 0o077 == 0, name
    old = refserver.admin_token
    assert len(old) >= 32
    assert old not in refserver.log()  # only the file's path is printed
    refserver.stop()
    refserver.start()
    assert refserver.admin_token != old
    r = requests.get(
        f"{refserver.url}/admin/agents", headers={"Authorization": f"Bearer {old}"}, timeout=10
    )
    assert r.status_code == 401  # a token from before the restart is dead
    assert refserver.agents() == []


def _as_another_user(data_dir: str, url: str) -> dict[str, object]:
    """What a local user without the token can do: read the file? call the admin API?"""
    out: dict[str, object] = {}
    try:
        Path(data_dir, "admin.token").read_text()
        out["read"] = "read the token"
    except PermissionError:
        out["read"] = "denied"
    try:
        client_token(None, data_dir)
        out["cli"] = "found a token"
    except TokenFileError as exc:
        out["cli"] = str(exc)
    r = requests.post(f"{url}/admin/revoke-tokens", timeout=10)
    out["revoke"] = r.status_code
    r = requests.post(
        f"{url}/admin/commands", json={"group": "default", "name": "restart"}, timeout=10
    )
    out["command"] = r.status_code
    return out


@needs_root
def test_another_local_user_cannot_read_the_token_nor_use_the_admin_api(open_dir) -> None:
    # The data dir is left 0755 (as an operator may have made it): the file mode alone protects.
    data_dir = open_dir / "server"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    server = RefServer(data_dir).start()
    try:
        agent = enroll(server.url)
        seen = run_as_nobody(_as_another_user, str(data_dir), server.url)
        assert seen["read"] == "denied"
        assert "cannot read the admin token file" in str(seen["cli"])
        assert seen["revoke"] == 401 and seen["command"] == 401
        assert server.commands() == []
        assert agent.poll(timeout=10).status_code == 408  # its token still valid
        # the user who started the server drives it through the same file
        assert server.admin.queue_command(name="restart", agent_id=agent.id)
    finally:
        server.stop()


def test_the_cli_finds_the_token_of_a_server_started_with_the_defaults(tmp_path) -> None:
    """``agentbus server &`` then ``agentbus server agents`` in the same directory: unchanged."""
    server = RefServer(tmp_path / "agentbus-server").start()  # the CLI's default data dir
    try:
        agent = enroll(server.url)
        run = [sys.executable, "-m", "agent.main", "server", "agents", "--url", server.url]
        kw = {"capture_output": True, "text": True, "timeout": 30, "stdin": subprocess.DEVNULL}
        out = subprocess.run(run, cwd=tmp_path, env=clean_env(), **kw)
        assert out.returncode == 0, out.stderr
        assert agent.id in out.stdout
        # elsewhere, the token comes from $AGENTBUS_ADMIN_TOKEN or --admin-token-file
        env = {**clean_env(), "AGENTBUS_ADMIN_TOKEN": server.admin_token}
        assert subprocess.run(run, cwd=REPO, env=env, **kw).returncode == 0
        tf = ["--admin-token-file", str(server.token_file)]
        assert subprocess.run(run + tf, cwd=REPO, env=clean_env(), **kw).returncode == 0
        # and without any, one line and exit 3
        out = subprocess.run(run, cwd=REPO, env=clean_env(), **kw)
        assert out.returncode == 3
        assert "Admin token missing or wrong" in out.stderr and len(out.stderr.splitlines()) == 1
    finally:
        server.stop()


def test_a_second_server_that_cannot_listen_leaves_the_token_alone(refserver) -> None:
    token = refserver.admin_token
    args = ("--port", str(refserver.port), "--data-dir", str(refserver.data_dir))
    proc = _serve(*args, env=clean_env())
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "cannot listen" in err
    assert refserver.admin_token == token and refserver.agents() == []


def test_a_given_token_file_is_used_and_must_be_private(refserver_factory, tmp_path) -> None:
    token_file = tmp_path / "my.token"
    token = new_token()
    write_token(token_file, token)
    server = refserver_factory(admin_token_file=token_file)
    assert server.admin_token == token and server.agents() == []
    server.stop()
    token_file.chmod(0o640)
    with pytest.raises(RuntimeError, match="others could read it; chmod 600 it"):
        server.start()
    token_file.write_text("short\n")
    token_file.chmod(0o600)
    with pytest.raises(RuntimeError, match="shorter than 32 characters"):
        server.start()


# -- defaults and the password ------------------------------------------------------------------
def test_the_default_password_is_refused_on_a_non_loopback_bind(tmp_path) -> None:
    port = free_port()
    proc = _serve(
        "--host", "0.0.0.0", "--port", str(port), "--data-dir", str(tmp_path / "d"), env=clean_env()
    )
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.splitlines() == [
        "agentbus server: refusing to listen on 0.0.0.0 with the default management password:"
        " give another with --password-file FILE, $AGENTBUS_SERVER_PASSWORD or the prompt"
        " (the default is for loopback only)"
    ]
    with socket.socket() as sock:  # nothing listens there
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    # the default given explicitly is the default too
    env = {**clean_env(), "AGENTBUS_SERVER_PASSWORD": "wazuh"}
    proc = _serve("--host", "::", "--port", str(port), "--data-dir", str(tmp_path / "d"), env=env)
    assert proc.wait(timeout=30) == 2


def test_a_non_loopback_bind_with_its_own_password_starts_and_warns(tmp_path) -> None:
    port = free_port()
    secret = "Qz-" + new_token()
    pw = tmp_path / "password"
    pw.write_text(secret + "\n")
    proc = _serve(
        "--host", "0.0.0.0", "--port", str(port), "--data-dir", str(tmp_path / "d"),
        "--password-file", str(pw), env=clean_env(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert f"listening on http://0.0.0.0:{port}" in banner
        assert "password from --password-file" in banner and secret not in banner
        r = requests.post(
            f"http://127.0.0.1:{port}/security/user/authenticate",
            auth=("wazuh", secret),
            timeout=10,
        )
        assert r.status_code == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "warning: plain HTTP on 0.0.0.0" in err and secret not in err


def test_the_password_is_in_no_argv_and_no_start_up_line(refserver_factory) -> None:
    secret = "S3cret-" + new_token()
    server = refserver_factory(password=secret)
    assert server.pid is not None
    cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().decode()
    assert secret not in cmdline
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert secret not in ps
    assert secret not in server.log()
    assert "password from $AGENTBUS_SERVER_PASSWORD" in server.log()
    # and it is the password: the management login takes it, not the default
    login = f"{server.url}/security/user/authenticate"
    assert requests.post(login, auth=("wazuh", secret), timeout=10).status_code == 200
    assert requests.post(login, auth=("wazuh", "wazuh"), timeout=10).status_code == 401
    assert secret not in server.log()


def test_password_in_argv_is_refused_without_echoing_it(tmp_path) -> None:
    proc = _serve("--data-dir", str(tmp_path), "--password", "hunter2-xyz", env=clean_env())
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "--password is not taken" in err and "hunter2-xyz" not in err + out
    assert not (tmp_path / "admin.token").exists()  # refused before anything was written


def test_loopback_checks() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "localhost", "::ffff:127.0.0.1", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.1", "example.com", "", "::ffff:10.0.0.1"):
        assert not is_loopback(host), host
    default = Password("wazuh", "the built-in default")
    assert default_refusal("127.0.0.1", default) is None
    assert default_refusal("0.0.0.0", Password("other", "x")) is None
    assert default_refusal("10.0.0.1", default) is not None


# -- throttling per client address ------------------------------------------------------------
def test_wrong_agent_keys_are_throttled_per_address_and_cost_no_pbkdf2(refserver) -> None:
    agent = enroll(refserver.url)
    path = "/api/v1/authentication"
    wrong = {"uuid": agent.id, "key": "x" * 32}
    for _ in range(10):  # the default: 10 failures per minute and address
        status, _, _ = _from(OTHER, refserver, "POST", path, body=wrong)
        assert status == 401
    status, headers, body = _from(OTHER, refserver, "POST", path, body=wrong)
    assert status == 429
    assert 1 <= int(headers["retry-after"]) <= 6  # one failure back every 6 s
    assert json.loads(body)["code"] == 429 and "retry in" in json.loads(body)["message"]
    # the attacker's address stays blocked even with a right key; unknown ids too
    right = {"uuid": agent.id, "key": agent.key}
    assert _from(OTHER, refserver, "POST", path, body=right)[0] == 429
    assert (
        _from(OTHER, refserver, "POST", path, body={"uuid": str(uuid.uuid4()), "key": "y" * 32})[0]
        == 429
    )
    # another address with the right key is not affected
    r = requests.post(f"{refserver.url}{path}", json=right, timeout=10)
    assert r.status_code == 200
    stats = refserver.stats()
    assert stats["auth_failures"] == {"agent key": 10}  # the 429s ran no key check
    assert stats["throttled"] == {"agent key": 3}
    assert "refused POST /api/v1/authentication from 127.0.0.2: 429" in refserver.log()


def test_wrong_passwords_and_admin_tokens_are_throttled_too(refserver_factory) -> None:
    server = refserver_factory(failures_per_minute=3)
    login = "/security/user/authenticate"
    bad = {"Authorization": "Basic " + base64.b64encode(b"wazuh:guess").decode()}
    for _ in range(3):
        assert _from(OTHER, server, "POST", login, headers=bad)[0] == 401
    status, headers, body = _from(OTHER, server, "POST", login, headers=bad)
    assert status == 429 and int(headers["retry-after"]) >= 1
    assert json.loads(body)["title"] == "Too Many Requests"  # the management API's shape
    r = requests.post(f"{server.url}{login}", auth=("wazuh", "wazuh"), timeout=10)
    assert r.status_code == 200  # another address logs in
    guess = {"Authorization": "Bearer " + new_token()}
    for _ in range(3):
        assert _from(OTHER, server, "GET", "/admin/agents", headers=guess)[0] == 401
    assert _from(OTHER, server, "GET", "/admin/agents", headers=guess)[0] == 429
    assert server.agents() == []  # the operator at 127.0.0.1 is not locked out
    assert server.stats()["throttled"] == {"login": 1, "admin": 1}


def test_many_agents_enrolling_quickly_from_one_address_are_never_throttled(refserver) -> None:
    agents = [enroll(refserver.url) for _ in range(30)]  # 30 logins, enrollments, key checks
    for agent in agents:
        r = requests.post(
            f"{refserver.url}/api/v1/authentication",
            json={"uuid": agent.id, "key": agent.key},
            timeout=10,
        )
        assert r.status_code == 200
    assert refserver.stats()["throttled"] == {}


def test_the_agent_backs_off_on_429_and_does_not_give_up(enroll_agent, refserver_factory) -> None:
    server = refserver_factory(failures_per_minute=1)
    config, creds, _ = enroll_agent(server=server)
    r = requests.post(
        f"{server.url}/api/v1/authentication",
        json={"uuid": creds.uuid, "key": "z" * 32},
        timeout=10,
    )
    assert r.status_code == 401  # someone on this address guessed once: it is blocked now
    tokens = TokenManager(config, creds)
    with pytest.raises(ServerUnreachable) as info:
        tokens.token()
    assert not isinstance(info.value, ServerRejected)  # temporary, not "enroll again"
    assert info.value.retry_after is not None and info.value.retry_after >= 1
    assert "HTTP 429" in str(info.value)


def test_the_throttle_refills_forgets_and_separates_kinds() -> None:
    now = [0.0]
    throttle = FailureThrottle(6, max_clients=3, clock=lambda: now[0])
    for _ in range(6):
        assert throttle.retry_after("agent key", "a") is None
        throttle.failed("agent key", "a")
    assert throttle.retry_after("agent key", "a") == 10  # one failure back every 10 s
    assert throttle.retry_after("login", "a") is None  # another kind
    assert throttle.retry_after("agent key", "b") is None  # another address
    now[0] += 9.5
    assert throttle.retry_after("agent key", "a") == 1
    now[0] += 0.5
    assert throttle.retry_after("agent key", "a") is None
    throttle.failed("agent key", "a")
    assert throttle.retry_after("agent key", "a") == 10
    # bounded: the table never grows past max_clients (a spoofing flood costs memory once)
    for i in range(100):
        throttle.failed("agent key", f"c{i}")
    assert throttle.clients() <= 3
    assert FailureThrottle(0).retry_after("x", "y") is None  # 0: no limit


# -- TLS one flag away --------------------------------------------------------------------------
def test_tls_flag_serves_https_with_a_printed_self_signed_certificate(refserver_factory) -> None:
    server = refserver_factory(self_signed=True)  # the fixture passes --tls
    assert server.ca_file is not None
    assert f"certificate {server.ca_file}" in server.log()
    r = requests.post(
        f"{server.url}/security/user/authenticate",
        auth=("wazuh", "wazuh"),
        verify=str(server.ca_file),
        timeout=10,
    )
    assert r.status_code == 200
    assert server.agents() == []  # the admin client verifies the same certificate
    assert os.stat(server.ca_file.with_name("server.key")).st_mode & 0o077 == 0


def _read_until(fd: int, needle: bytes, timeout: float = 30.0) -> bytes:
    import select
    import time

    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0 and select.select([fd], [], [], left)[0], seen
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            chunk = b""
        assert chunk, seen
        seen += chunk
    return seen


def test_the_password_prompt_on_a_terminal_is_not_echoed_nor_printed(tmp_path) -> None:
    import pty
    import signal

    port, secret = free_port(), "Pr0mpt-" + new_token()
    argv = [sys.executable, "-m", "agent.main", "server", "--port", str(port),
            "--data-dir", str(tmp_path / "d")]  # fmt: skip
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session of its own, the pty its controlling terminal
        os.chdir(REPO)
        os.execve(sys.executable, argv, clean_env())
    try:
        _read_until(fd, b"management API password")
        os.write(fd, secret.encode() + b"\n")
        seen = _read_until(fd, b"data dir")  # the end of the start-up line
        assert secret.encode() not in seen  # not echoed, not in the start-up line
        assert b"password from the prompt" in seen
        login = f"http://127.0.0.1:{port}/security/user/authenticate"
        assert requests.post(login, auth=("wazuh", secret), timeout=10).status_code == 200
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
        os.close(fd)
