"""Tokens against the reference server over real HTTP: revocation, clock skew, outages,
refusals, and one renewal shared by separate processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

from comms.api import ServerClient
from comms.credentials import Credentials, save_credentials
from comms.errors import ServerRejected, ServerUnreachable
from comms.metadata import agent_line
from comms.tokens import TokenManager
from tests.comms.helpers import FakeClock
from tests.fixtures.agent import TEST_FACTS, EnrolledAgent
from tests.fixtures.common import wait_for
from tests.fixtures.refserver import REPO, RefServer


def body(credentials: Credentials, n: int = 1) -> bytes:
    lines = [agent_line(credentials, TEST_FACTS)]
    for i in range(n):
        lines.append(b'{"collector":"file","module":"logcollector"}')
        lines.append(json.dumps({"event": {"original": f"line {i}"}}).encode())
    return b"\n".join(lines)


def test_a_revoked_token_is_replaced_and_the_call_retried(enrolled_agent: EnrolledAgent) -> None:
    config, creds, server = enrolled_agent
    client = ServerClient(config, TokenManager(config, creds))
    assert client.post_events("stateless", body(creds)).status == 204
    server.revoke_tokens()
    reply = client.post_events("stateless", body(creds))
    assert reply.status == 204  # the caller never saw the 403
    assert server.auth_count() == 2
    assert server.request_count(path="/api/v1/events/stateless", status=403) == 1
    assert server.count_events(module="logcollector") == 2


def test_many_threads_hit_by_a_revocation_renew_once(enrolled_agent: EnrolledAgent) -> None:
    import threading

    config, creds, server = enrolled_agent
    client = ServerClient(config, TokenManager(config, creds))
    client.post_events("stateless", body(creds))
    server.revoke_tokens()
    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda: statuses.append(client.post_events("stateless", body(creds)).status))
        for _ in range(6)
    ]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert statuses == [204] * 6
    assert server.auth_count() == 2


@pytest.mark.parametrize("skew", [2000, -2000])
def test_a_skewed_server_clock_costs_one_authentication_per_lifetime(
    refserver_factory: Callable[..., RefServer],
    enroll_agent: Callable[..., EnrolledAgent],
    skew: int,
) -> None:
    server = refserver_factory(clock_skew=skew)
    config, creds, _ = enroll_agent(server)
    clock = FakeClock()
    client = ServerClient(config, TokenManager(config, creds, clock=clock))
    for _ in range(20):
        assert client.post_events("stateless", body(creds)).status == 204
    assert server.auth_count() == 1
    clock.advance(700)  # most of the 900 s lifetime, by our own clock
    for _ in range(5):
        assert client.post_events("stateless", body(creds)).status == 204
    assert server.auth_count() == 1
    clock.advance(30)  # past 80 %: exactly one renewal
    for _ in range(5):
        assert client.post_events("stateless", body(creds)).status == 204
    assert server.auth_count() == 2
    assert client.tokens.expires_in() == pytest.approx(900, abs=5)


def test_server_down_for_a_while_and_back(enrolled_agent: EnrolledAgent) -> None:
    config, creds, server = enrolled_agent
    clock = FakeClock()
    tokens = TokenManager(config, creds, clock=clock)
    client = ServerClient(config, tokens)
    assert client.post_events("stateless", body(creds)).status == 204
    server.stop()
    with pytest.raises(ServerUnreachable, match="connection refused") as info:
        client.post_events("stateless", body(creds))
    assert info.value.exit_code == 3
    clock.advance(1000)  # the token expired while the server was away
    with pytest.raises(ServerUnreachable) as first:
        tokens.token()
    assert first.value.retry_after is not None and 0 <= first.value.retry_after <= 1
    server.start()
    clock.advance(first.value.retry_after + 0.01)
    assert client.post_events("stateless", body(creds)).status == 204
    assert server.count_events(module="logcollector") == 2


def test_the_server_restarting_with_new_keys_is_one_renewal(enrolled_agent: EnrolledAgent) -> None:
    config, creds, server = enrolled_agent
    client = ServerClient(config, TokenManager(config, creds))
    client.post_events("stateless", body(creds))
    server.stop()
    server.start()
    server.revoke_tokens()  # as if the restarted server had a new signing key
    assert wait_for(lambda: client.post_events("stateless", body(creds)).status == 204)


def test_invalid_key_stops_with_exit_3_and_one_clear_line(enrolled_agent: EnrolledAgent) -> None:
    config, creds, server = enrolled_agent
    wrong = Credentials(uuid=creds.uuid, key="W" * 32, name=creds.name, server_url=creds.server_url)
    tokens = TokenManager(config, wrong)
    with pytest.raises(ServerRejected) as info:
        ServerClient(config, tokens).post_events("stateless", body(creds))
    err = info.value
    assert (err.status, err.exit_code) == (401, 3)
    assert str(err) == (
        f"the server refused agent {creds.name} ({creds.uuid}): Invalid key (HTTP 401); "
        "enroll it again with 'agentbus register --force'"
    )
    with pytest.raises(ServerRejected):
        tokens.token()  # final: not asked again
    assert server.request_count(path="/api/v1/authentication", status=401) == 1


def test_unknown_agent_stops_with_exit_3(enrolled_agent: EnrolledAgent) -> None:
    config, creds, server = enrolled_agent
    ghost = Credentials(uuid="0190a6d2-0000-7000-8000-00000000dead", key=creds.key,
                        name="ghost", server_url=creds.server_url)  # fmt: skip
    with pytest.raises(ServerRejected, match="Agent does not exist") as info:
        TokenManager(config, ghost).token()
    assert (info.value.status, info.value.exit_code) == (403, 3)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (403, "Couldn't connect to the indexer: connection refused"),
        (403, "Couldn't get key pair: [Errno 2] No such file or directory"),
        (400, "Injected fault"),
        (503, "Injected fault"),
    ],
)
def test_server_trouble_at_authentication_is_retried_not_final(
    enrolled_agent: EnrolledAgent, status: int, message: str
) -> None:
    config, creds, server = enrolled_agent
    clock = FakeClock()
    tokens = TokenManager(config, creds, clock=clock)
    client = ServerClient(config, tokens)
    assert client.post_events("stateless", body(creds)).status == 204
    server.set_fault(status=status, path="/api/v1/authentication", count=2, message=message)
    server.revoke_tokens()
    with pytest.raises(ServerUnreachable) as info:
        client.post_events("stateless", body(creds))  # 403 on the token, then the fault
    text = str(info.value)
    assert message in text and text.endswith(f"(HTTP {status})") and "\n" not in text
    auth = tokens.auth_status()
    assert (auth["state"], auth["message"], auth["http_status"]) == ("retrying", message, status)
    clock.advance(60)
    with pytest.raises(ServerUnreachable):
        client.post_events("stateless", body(creds))  # the fault's second answer
    clock.advance(60)
    assert client.post_events("stateless", body(creds)).status == 204  # the fault is over
    assert tokens.auth_status()["state"] == "ok"
    assert server.count_events(module="logcollector") == 2


PROCESS = textwrap.dedent(
    """
    import sys
    from core.config import config_from_dict
    from comms.credentials import load_credentials
    from comms.tokens import TokenManager
    config = config_from_dict({"agent": {"data_dir": sys.argv[1], "server_url": sys.argv[2]}})
    tokens = TokenManager(config, load_credentials(sys.argv[1]))
    sys.stdin.readline()  # start together
    print(tokens.token()[-16:], tokens.authentications, flush=True)
    """
)


def test_forwarder_and_commander_processes_share_one_token(enrolled_agent: EnrolledAgent) -> None:
    config, creds, server = enrolled_agent
    cmd = [sys.executable, "-c", PROCESS, str(config.data_dir), server.url]
    procs = [
        subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outputs = [p.communicate(timeout=30)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len({tail for tail, _ in outputs}) == 1  # the same token everywhere
    assert sorted(n for _, n in outputs) == ["0", "0", "1"]
    assert server.auth_count() == 1
    # a restart within the lifetime reuses the cached token
    again = subprocess.run(cmd, cwd=REPO, input="go\n", capture_output=True, text=True, timeout=30)
    assert again.stdout.split() == outputs[0][:1] + ["0"]
    assert server.auth_count() == 1


def test_token_cache_with_an_old_identity_is_not_used(
    enrolled_agent: EnrolledAgent, enroll_agent
) -> None:  # type: ignore[no-untyped-def]
    config, creds, server = enrolled_agent
    TokenManager(config, creds).token()
    _, new_creds, _ = enroll_agent()  # --force: a new identity in the same data dir
    assert new_creds.uuid != creds.uuid
    assert not (config.data_dir / "token.json").exists()
    save_credentials(config.data_dir, new_creds)
    ServerClient(config, TokenManager(config, new_creds)).post_events("stateless", body(new_creds))
    assert server.auth_count() == 2


def test_calls_reuse_one_kept_alive_connection(enrolled_agent: EnrolledAgent) -> None:
    config, creds, server = enrolled_agent
    client = ServerClient(config, TokenManager(config, creds))
    for _ in range(20):
        assert client.post_events("stateless", body(creds)).status == 204
    pools = client.session.get_adapter(server.url).poolmanager.pools  # type: ignore[attr-defined]
    [pool] = [pools[key] for key in pools.keys()]  # noqa: SIM118 - no __iter__ on this container
    assert pool.num_connections == 1  # opened once, kept alive for the 19 others
