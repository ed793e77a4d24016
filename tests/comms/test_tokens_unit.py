"""Token manager against requests-mock: rare answers, scheduling, locking, cache, back-off.

The real-server behaviour (revocation, clock skew, outages) is in test_tokens_refserver.py.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests_mock

from comms.credentials import Credentials
from comms.errors import BadResponse, ServerRejected, ServerUnreachable
from comms.tokens import DEFAULT_LIFETIME, TokenManager
from core.config import Config
from tests.comms.helpers import FakeClock, captured_logs, make_jwt

URL = "https://server.test:27000"
AUTH = URL + "/api/v1/authentication"
KEY = "Secretkey0123456789abcdefghijklm"
CREDS = Credentials(uuid="0190a6d2-0000-7000-8000-0000000000aa", key=KEY, name="h", server_url=URL)


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def manager(config: Config, clock: FakeClock, **kw: Any) -> TokenManager:
    kw.setdefault("rng", lambda: 1.0)  # the back-off's upper bound: deterministic tests
    return TokenManager(config, CREDS, clock=clock, boot_id="boot-1", **kw)


def test_authenticates_with_uuid_and_key_and_reuses_the_token(config, clock) -> None:
    token = make_jwt()
    with requests_mock.Mocker() as m:
        m.post(AUTH, json={"token": token})
        tm = manager(config, clock)
        assert tm.token() == token
        assert tm.token() == token
        assert m.call_count == 1
        sent = m.request_history[0]
        assert json.loads(sent.body) == {"uuid": CREDS.uuid, "key": KEY}
        assert "Authorization" not in sent.headers
        assert sent.headers["Content-Type"] == "application/json"
        assert sent.headers["User-Agent"].startswith("agentbus/")


def test_renews_at_80_percent_of_the_lifetime_counted_from_receipt(config, clock) -> None:
    # iat/exp far in the past by our clock: only exp - iat matters
    first, second = make_jwt(iat=1_000, lifetime=900), make_jwt(iat=2_000, lifetime=900)
    with requests_mock.Mocker() as m:
        m.post(AUTH, [{"json": {"token": first}}, {"json": {"token": second}}])
        tm = manager(config, clock)
        assert tm.token() == first
        assert tm.expires_in() == pytest.approx(900)
        clock.advance(719)
        assert tm.token() == first
        clock.advance(2)
        assert tm.token() == second
        assert m.call_count == 2


def test_garbled_json_is_a_bad_response(config, clock) -> None:
    with requests_mock.Mocker() as m:
        m.post(AUTH, text='{"token": "abc', status_code=200)
        with pytest.raises(BadResponse, match="not JSON"):
            manager(config, clock).token()


@pytest.mark.parametrize("body", [{}, {"token": ""}, {"token": 5}, {"data": {"token": "x"}}, []])
def test_missing_token_field_is_a_bad_response(config, clock, body: Any) -> None:
    with requests_mock.Mocker() as m:
        m.post(AUTH, json=body)
        with pytest.raises(BadResponse, match="no token"):
            manager(config, clock).token()


def test_token_that_is_not_a_jwt_is_a_bad_response(config, clock) -> None:
    with requests_mock.Mocker() as m:
        m.post(AUTH, json={"token": "not-a-jwt"})
        with pytest.raises(BadResponse, match="not a readable JWT"):
            manager(config, clock).token()


def test_token_without_exp_gets_the_protocol_lifetime(config, clock) -> None:
    token = make_jwt(lifetime=None)
    with requests_mock.Mocker() as m, captured_logs() as logs:
        m.post(AUTH, json={"token": token})
        tm = manager(config, clock)
        assert tm.token() == token
        assert tm.expires_in() == pytest.approx(DEFAULT_LIFETIME)
        assert any("no usable exp/iat" in line for line in logs)


def test_token_that_expires_before_it_is_issued_is_a_bad_response(config, clock) -> None:
    with requests_mock.Mocker() as m:
        m.post(AUTH, json={"token": make_jwt(lifetime=-5)})
        with pytest.raises(BadResponse, match="expires before"):
            manager(config, clock).token()


@pytest.mark.parametrize(
    ("status", "message"), [(401, "Invalid key"), (403, "Agent does not exist")]
)
def test_invalid_key_or_unknown_agent_is_final(config, clock, status: int, message: str) -> None:
    with requests_mock.Mocker() as m:
        m.post(AUTH, json={"message": message, "code": status}, status_code=status)
        tm = manager(config, clock)
        with pytest.raises(ServerRejected) as info:
            tm.token()
        assert info.value.status == status
        assert info.value.exit_code == 3
        assert message in str(info.value) and "register --force" in str(info.value)
        assert "\n" not in str(info.value)
        # it stays refused without asking the server again
        clock.advance(3600)
        with pytest.raises(ServerRejected):
            tm.token()
        assert m.call_count == 1


def test_renew_of_a_replaced_token_is_a_no_op(config, clock) -> None:
    tokens = [make_jwt(iat=1), make_jwt(iat=2)]
    with requests_mock.Mocker() as m:
        m.post(AUTH, [{"json": {"token": t}} for t in tokens])
        tm = manager(config, clock)
        old = tm.token()
        new = tm.renew(old)
        assert new == tokens[1]
        assert tm.renew(old) == new  # a second caller with the same stale token
        assert m.call_count == 2


def test_many_threads_refused_at_once_make_one_renewal(config, clock) -> None:
    tokens = [make_jwt(iat=1), make_jwt(iat=2), make_jwt(iat=3)]
    with requests_mock.Mocker() as m:
        m.post(AUTH, [{"json": {"token": t}} for t in tokens])
        tm = manager(config, clock)
        old = tm.token()
        results: list[str] = []
        threads = [threading.Thread(target=lambda: results.append(tm.renew(old))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert results == [tokens[1]] * 8
        assert m.call_count == 2


def test_unreachable_server_backs_off_with_jitter(config, clock) -> None:
    import requests

    with requests_mock.Mocker() as m:
        m.post(AUTH, exc=requests.exceptions.ConnectionError("refused"))
        tm = manager(config, clock, rng=lambda: 0.5)
        with pytest.raises(ServerUnreachable) as first:
            tm.token()
        assert first.value.retry_after == pytest.approx(0.5)  # 0.5 * 1 s
        with pytest.raises(ServerUnreachable, match="postponed"):
            tm.token()  # within the back-off: the server is not asked
        assert m.call_count == 1
        clock.advance(0.6)
        with pytest.raises(ServerUnreachable) as second:
            tm.token()
        assert second.value.retry_after == pytest.approx(1.0)  # 0.5 * 2 s
        assert m.call_count == 2
        for _ in range(10):
            clock.advance(100)
            with pytest.raises(ServerUnreachable) as later:
                tm.token()
        assert later.value.retry_after == pytest.approx(30.0)  # 0.5 * the 60 s cap
        token = make_jwt()
        m.post(AUTH, json={"token": token})
        clock.advance(100)
        assert tm.token() == token


def test_server_busy_honours_retry_after(config, clock) -> None:
    with requests_mock.Mocker() as m:
        m.post(AUTH, status_code=503, headers={"Retry-After": "7"}, json={"message": "busy"})
        with pytest.raises(ServerUnreachable) as info:
            manager(config, clock, rng=lambda: 0.0).token()
        assert info.value.retry_after == pytest.approx(7.0)


def test_a_failed_early_renewal_keeps_the_still_valid_token(config, clock) -> None:
    import requests

    token = make_jwt()
    with requests_mock.Mocker() as m:
        m.post(AUTH, json={"token": token})
        tm = manager(config, clock)
        tm.token()
        m.post(AUTH, exc=requests.exceptions.ConnectTimeout("slow"))
        clock.advance(800)  # due, not expired
        assert tm.token() == token
        clock.advance(95)  # expired now
        with pytest.raises(ServerUnreachable):
            tm.token()


def test_fresh_tokens_refused_in_a_row_space_out_renewals(config, clock) -> None:
    with requests_mock.Mocker() as m:
        m.post(AUTH, [{"json": {"token": make_jwt(iat=i)}} for i in range(10)])
        tm = manager(config, clock)
        t = tm.token()
        t = tm.renew(t)  # refused once: renewed at once
        with pytest.raises(ServerUnreachable) as info:
            tm.renew(t)  # the new token refused at once too: wait first
        assert 0 < (info.value.retry_after or 0) <= 2
        assert m.call_count == 2
        clock.advance(2.1)
        tm.renew(t)
        assert m.call_count == 3


def test_cache_survives_a_restart_and_is_private(config, clock) -> None:
    token = make_jwt()
    with requests_mock.Mocker() as m:
        m.post(AUTH, json={"token": token})
        manager(config, clock).token()
        cache = config.data_dir / "token.json"
        assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
        clock.advance(500)
        again = manager(config, clock)  # a restarted service, same boot
        assert again.token() == token
        assert again.expires_in() == pytest.approx(400)
        assert m.call_count == 1


def test_cache_after_a_reboot_uses_the_wall_clock(config, clock) -> None:
    token = make_jwt()
    wall = FakeClock(1_700_000_000)
    with requests_mock.Mocker() as m:
        m.post(AUTH, json={"token": token})
        manager(config, clock, wall=wall).token()
        wall.advance(300)
        rebooted = TokenManager(
            config, CREDS, clock=FakeClock(5.0), wall=wall, boot_id="boot-2", rng=lambda: 1.0
        )
        assert rebooted.token() == token
        assert rebooted.expires_in() == pytest.approx(600)
        wall.advance(900)
        late = TokenManager(config, CREDS, clock=FakeClock(5.0), wall=wall, boot_id="boot-3")
        late.token()
        assert m.call_count == 2


def test_cache_of_another_agent_or_garbled_is_ignored(config, clock) -> None:
    token = make_jwt()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    cache = config.data_dir / "token.json"
    with requests_mock.Mocker() as m:
        m.post(AUTH, json={"token": token})
        cache.write_text(json.dumps({"uuid": "someone-else", "token": "x", "lifetime": 900}))
        assert manager(config, clock).token() == token
        cache.write_text("{garbage")
        assert manager(config, clock).token() == token
        assert m.call_count == 2


def test_two_managers_on_one_data_dir_share_the_renewal(config, clock) -> None:
    # Two managers stand for the forwarder and the commander: the file lock and the
    # re-read cache make the second one adopt the token the first one fetched.
    tokens = [make_jwt(iat=i) for i in range(1, 5)]
    with requests_mock.Mocker() as m:
        m.post(AUTH, [{"json": {"token": t}} for t in tokens])
        forwarder, commander = manager(config, clock), manager(config, clock)
        assert forwarder.token() == commander.token() == tokens[0]
        assert m.call_count == 1
        fresh = forwarder.renew(tokens[0])  # the forwarder got a 403
        assert commander.renew(tokens[0]) == fresh  # then the commander did too
        assert m.call_count == 2
        clock.advance(800)  # due for both: one renewal between them
        a, b = forwarder.token(), commander.token()
        assert a == b and m.call_count == 3


def test_no_secret_in_any_log_line(config, clock) -> None:
    token = make_jwt()
    with requests_mock.Mocker() as m, captured_logs() as logs:
        m.post(AUTH, json={"token": token})
        tm = manager(config, clock)
        tm.token()
        tm.renew(token)
        clock.advance(40)
        m.post(AUTH, status_code=401, json={"message": "Invalid key", "code": 401})
        with pytest.raises(ServerRejected) as info:
            tm.renew(tm.token())
    text = "\n".join(logs) + str(info.value)
    assert logs
    assert KEY not in text and token not in text and token.split(".")[1] not in text


def test_cache_file_holds_no_key(config, clock) -> None:
    with requests_mock.Mocker() as m:
        m.post(AUTH, json={"token": make_jwt()})
        manager(config, clock).token()
    assert KEY not in Path(config.data_dir / "token.json").read_text()


def test_while_backing_off_a_token_renewed_by_another_process_is_adopted(config, clock) -> None:
    import requests

    token = make_jwt()
    with requests_mock.Mocker() as m:
        m.post(AUTH, exc=requests.exceptions.ConnectionError("refused"))
        commander = manager(config, clock)
        with pytest.raises(ServerUnreachable):
            commander.token()  # backing off now
        m.post(AUTH, json={"token": token})
        manager(config, clock).token()  # the forwarder gets through
        assert commander.token() == token  # within the back-off, from the cache
        assert m.call_count == 2
        assert commander.status()["token_adopted"] == 1


def test_a_final_refusal_is_raised_afresh_each_time(config, clock) -> None:
    with requests_mock.Mocker() as m:
        m.post(AUTH, status_code=401, json={"message": "Invalid key", "code": 401})
        tm = manager(config, clock)
        raised = []
        for _ in range(3):
            with pytest.raises(ServerRejected) as info:
                tm.token()
            raised.append(info.value)
    assert len({id(e) for e in raised}) == 3
    assert {str(e) for e in raised} == {str(raised[0])} and raised[2].status == 401


def test_status_counters(config, clock) -> None:
    with requests_mock.Mocker() as m:
        m.post(AUTH, json={"token": make_jwt()})
        tm = manager(config, clock)
        assert tm.status()["token_expires_in"] is None
        tm.token()
        clock.advance(100)
        status = tm.status()
    assert status["token_expires_in"] == pytest.approx(800)
    assert (status["token_authentications"], status["token_failures"]) == (1, 0)


def test_unwritable_data_dir_still_gives_tokens(make_config, clock, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    config = make_config({"agent": {"data_dir": str(blocker / "data")}})
    token = make_jwt()
    with requests_mock.Mocker() as m, captured_logs() as logs:
        m.post(AUTH, json={"token": token})
        tm = manager(config, clock)
        assert tm.token() == token
        assert tm.renew(token) == token
    assert sum("cannot open the token lock" in line for line in logs) == 1
    assert any("cannot write the token cache" in line for line in logs)


# -- failures by meaning, not by status ----------------------------------------------------

TEMPORARY = [
    (403, "Couldn't connect to the indexer: connection refused"),
    (403, "Couldn't get key pair: [Errno 13] Permission denied"),
    (403, "Forbidden"),  # a proxy's own page, say
    (401, "Unauthorized"),
    (408, "Request timeout"),
    (500, "Internal server error"),
    (502, "Bad gateway"),
]


@pytest.mark.parametrize(("status", "message"), TEMPORARY)
def test_other_failures_are_temporary_and_backed_off(
    config, clock, status: int, message: str
) -> None:
    token = make_jwt()
    with requests_mock.Mocker() as m:
        m.post(AUTH, status_code=status, json={"message": message, "code": status})
        tm = manager(config, clock, rng=lambda: 0.5, wall=lambda: 50_000.0)
        with pytest.raises(ServerUnreachable) as info:
            tm.token()
        assert f"{message} (HTTP {status})" in str(info.value)
        assert info.value.retry_after == pytest.approx(0.5) and info.value.exit_code == 3
        auth = tm.auth_status()
        assert auth["state"] == "retrying"
        assert (auth["message"], auth["http_status"], auth["failures"]) == (message, status, 1)
        assert auth["next_try_in"] == pytest.approx(0.5)
        assert auth["next_try_at"] == pytest.approx(50_000.5)
        m.post(AUTH, json={"token": token})
        clock.advance(0.6)
        assert tm.token() == token  # not latched: the next try goes through
    auth = tm.auth_status()
    assert (auth["state"], auth["message"], auth["next_try_in"], auth["failures"]) == (
        "ok", None, None, 0
    )  # fmt: skip
    assert auth["last_failure_at"] == pytest.approx(50_000.0)
    assert auth["token_expires_in"] == pytest.approx(900)


def test_final_messages_are_read_without_regard_to_case_or_a_full_stop(config, clock) -> None:
    with requests_mock.Mocker() as m:
        m.post(AUTH, status_code=401, json={"message": "Invalid key.", "code": 401})
        with pytest.raises(ServerRejected):
            manager(config, clock).token()
        m.post(AUTH, status_code=403, json={"message": "agent does not exist", "code": 403})
        with pytest.raises(ServerRejected):
            TokenManager(config, CREDS, clock=clock, boot_id="b").token()


def test_the_final_words_with_another_status_are_temporary(config, clock) -> None:
    # meaning is status *and* message: "Invalid key" with 403 is not the server's refusal
    with requests_mock.Mocker() as m:
        m.post(AUTH, status_code=403, json={"message": "Invalid key", "code": 403})
        with pytest.raises(ServerUnreachable):
            manager(config, clock).token()


def test_a_400_at_authentication_is_temporary_and_says_why(config, clock) -> None:
    with requests_mock.Mocker() as m:
        m.post(AUTH, status_code=400, json={"message": "body invalid JSON", "code": 400})
        tm = manager(config, clock)
        with pytest.raises(ServerUnreachable) as info:
            tm.token()
    text = str(info.value)
    assert "answered 400 to the authentication of agent h" in text and "\n" not in text
    assert "body invalid JSON" in text and "the server or a proxy in between is at fault" in text
    assert tm.auth_status()["state"] == "retrying"


def test_an_answer_in_the_management_shape_is_read_too(config, clock) -> None:
    with requests_mock.Mocker() as m:
        m.post(AUTH, status_code=503, json={"title": "Service Unavailable", "detail": "indexer"})
        tm = manager(config, clock)
        with pytest.raises(ServerUnreachable, match=r"now: indexer \(HTTP 503\)"):
            tm.token()
    assert tm.auth_status()["message"] == "indexer"


def test_a_revoked_token_during_an_outage_is_retried_not_fatal(config, clock) -> None:
    token = make_jwt()
    with requests_mock.Mocker() as m:
        m.post(AUTH, json={"token": token})
        tm = manager(config, clock, rng=lambda: 1.0)
        tm.token()
        indexer = "Couldn't connect to the indexer: connection refused"
        m.post(AUTH, status_code=403, json={"message": indexer, "code": 403})
        clock.advance(60)  # an old token, revoked: the caller got a 403 and renews
        with pytest.raises(ServerUnreachable):
            tm.renew(token)
        with pytest.raises(ServerUnreachable, match="postponed"):
            tm.renew(token)  # inside the back-off: not asked again
        assert m.call_count == 2
        assert tm.auth_status()["state"] == "retrying"
        assert tm.auth_status()["message"] == indexer
        fresh = make_jwt(iat=5)
        m.post(AUTH, json={"token": fresh})
        clock.advance(1.1)
        assert tm.renew(token) == fresh
        assert tm.auth_status()["state"] == "ok"


def test_network_failures_show_what_went_wrong(config, clock) -> None:
    import requests

    with requests_mock.Mocker() as m:
        m.post(AUTH, exc=requests.exceptions.ConnectionError("refused"))
        tm = manager(config, clock)
        with pytest.raises(ServerUnreachable):
            tm.token()
    auth = tm.auth_status()
    assert auth["state"] == "retrying" and auth["http_status"] is None
    assert auth["message"].startswith(f"cannot reach {URL}")


def test_auth_status_states(config, clock) -> None:
    tm = manager(config, clock, wall=lambda: 10_000.0)
    assert tm.auth_status() == {
        "state": "pending", "message": None, "http_status": None, "failures": 0,
        "last_failure_at": None, "next_try_in": None, "next_try_at": None,
        "token_expires_in": None, "token_expires_at": None, "authentications": 0,
    }  # fmt: skip
    with requests_mock.Mocker() as m:
        m.post(AUTH, json={"token": make_jwt()})
        tm.token()
        clock.advance(100)
        auth = tm.auth_status()
        assert auth["state"] == "ok" and auth["authentications"] == 1
        assert auth["token_expires_in"] == pytest.approx(800)
        assert auth["token_expires_at"] == pytest.approx(10_800)
        clock.advance(900)  # expired while nobody asked for it: pending, not ok
        assert tm.auth_status()["state"] == "pending"
        m.post(AUTH, status_code=401, json={"message": "Invalid key", "code": 401})
        with pytest.raises(ServerRejected):
            tm.token()
    auth = tm.auth_status()
    assert (auth["state"], auth["message"], auth["http_status"]) == ("refused", "Invalid key", 401)
    assert auth["next_try_in"] is None
