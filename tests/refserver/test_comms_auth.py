"""Comms API authentication and Bearer checks (docs/protocol.md §2, Authentication)."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization

from tests.refserver.helpers import enroll, error_of, stateless_pair

AUDIENCE = "Wazuh Communications API"


def _authenticate(url: str, body: object) -> requests.Response:
    return requests.post(f"{url}/api/v1/authentication", json=body, timeout=10)


def _sign(server, claims: dict) -> str:
    key = serialization.load_pem_private_key(
        (server.data_dir / "keys" / "private.pem").read_bytes(), password=None
    )
    return jwt.encode(claims, key, algorithm="ES256")  # type: ignore[arg-type]


def _poll_with(server, token: str) -> requests.Response:
    return requests.get(
        f"{server.url}/api/v1/commands", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def test_authentication_returns_a_jwt_with_exactly_the_real_claims(shared_server, agent) -> None:
    before = int(time.time())
    r = _authenticate(shared_server.url, {"uuid": agent.id, "key": agent.key})
    assert r.status_code == 200
    assert set(r.json()) == {"token"}
    token = r.json()["token"]
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    public = serialization.load_pem_public_key(
        (shared_server.data_dir / "keys" / "public.pem").read_bytes()
    )
    claims = jwt.decode(token, public, algorithms=["ES256"], audience=AUDIENCE)  # type: ignore[arg-type]
    assert set(claims) == {"iss", "aud", "iat", "exp", "uuid"}
    assert claims["iss"] == "wazuh" and claims["aud"] == AUDIENCE and claims["uuid"] == agent.id
    assert claims["exp"] - claims["iat"] == 900
    assert before <= claims["iat"] <= int(time.time())


def test_wrong_key_is_401_invalid_key(shared_server, agent) -> None:
    r = _authenticate(shared_server.url, {"uuid": agent.id, "key": "x" * 32})
    assert error_of(r) == (401, "Invalid key", 401)


def test_unknown_agent_is_403_agent_does_not_exist(shared_server) -> None:
    r = _authenticate(shared_server.url, {"uuid": str(uuid.uuid4()), "key": "x" * 32})
    assert error_of(r) == (403, "Agent does not exist", 403)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"uuid": "u"}, "key field required"),
        ({"key": "k"}, "uuid field required"),
        ({"uuid": 1, "key": "k"}, "uuid input should be a valid string"),
        (["uuid", "key"], "body input should be a valid dictionary"),
    ],
)
def test_malformed_authentication_body_is_400(shared_server, body, message) -> None:
    assert error_of(_authenticate(shared_server.url, body)) == (400, message, 400)


def test_auth_count_counts_successful_authentications_only(refserver) -> None:
    agent = enroll(refserver.url)
    assert refserver.auth_count() == 1
    _authenticate(refserver.url, {"uuid": agent.id, "key": "x" * 32})
    assert refserver.auth_count() == 1
    assert _authenticate(refserver.url, {"uuid": agent.id, "key": agent.key}).status_code == 200
    assert refserver.auth_count() == 2


def test_missing_bearer_is_403_not_401(shared_server) -> None:
    r = requests.get(f"{shared_server.url}/api/v1/commands", timeout=10)
    assert error_of(r) == (403, "Not authenticated", 403)
    r = requests.get(
        f"{shared_server.url}/api/v1/commands", headers={"Authorization": "Basic eDp5"}, timeout=10
    )
    assert error_of(r) == (403, "Invalid authentication credentials", 403)


def test_malformed_token_is_403_invalid(shared_server) -> None:
    assert error_of(_poll_with(shared_server, "not-a-jwt")) == (
        403,
        "Invalid authentication token",
        2706,
    )


def test_expired_token_is_403_expired(shared_server, agent) -> None:
    now = int(time.time())
    token = _sign(
        shared_server,
        {"iss": "wazuh", "aud": AUDIENCE, "iat": now - 1000, "exp": now - 100, "uuid": agent.id},
    )
    assert error_of(_poll_with(shared_server, token)) == (
        403,
        "Authentication token expired",
        2707,
    )


def test_token_with_another_lifetime_is_403(shared_server, agent) -> None:
    now = int(time.time())
    token = _sign(
        shared_server,
        {"iss": "wazuh", "aud": AUDIENCE, "iat": now, "exp": now + 3600, "uuid": agent.id},
    )
    assert error_of(_poll_with(shared_server, token)) == (
        403,
        "Invalid authentication token",
        2706,
    )


def test_token_for_another_audience_or_key_is_403(shared_server, agent) -> None:
    now = int(time.time())
    claims = {"iss": "wazuh", "aud": "Wazuh API REST", "iat": now, "exp": now + 900}
    assert _poll_with(shared_server, _sign(shared_server, claims)).status_code == 403
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode({**claims, "aud": AUDIENCE, "uuid": agent.id}, other, algorithm="ES256")
    assert error_of(_poll_with(shared_server, forged))[0] == 403
    # The genuine token still works (holds 1 s, then 408).
    assert agent.poll().status_code == 408


def test_revoke_tokens_rejects_every_earlier_token_and_new_ones_work(refserver) -> None:
    agent = enroll(refserver.url)
    assert agent.post("stateless", stateless_pair()).status_code == 204
    refserver.revoke_tokens()
    r = agent.post("stateless", stateless_pair())
    assert error_of(r) == (403, "Invalid authentication token", 2706)
    fresh = _authenticate(refserver.url, {"uuid": agent.id, "key": agent.key}).json()["token"]
    agent.token = fresh
    assert agent.post("stateless", stateless_pair()).status_code == 204


@pytest.mark.parametrize("skew", [2000, -2000])
def test_clock_skew_shifts_iat_and_exp(refserver_factory, skew) -> None:
    server = refserver_factory(clock_skew=skew)
    agent = enroll(server.url)
    claims = jwt.decode(agent.token, options={"verify_signature": False})
    assert abs(claims["iat"] - (time.time() + skew)) < 5
    assert claims["exp"] - claims["iat"] == 900
    # The server judges expiry by its own clock: a server 2000 s behind accepts the token,
    # and one 2000 s ahead accepts it as well (it issued it by its clock).
    assert agent.post("stateless", stateless_pair()).status_code == 204


def test_clock_skew_changed_at_runtime_expires_tokens(refserver) -> None:
    agent = enroll(refserver.url)
    refserver.set_clock_skew(901)
    r = agent.post("stateless", stateless_pair())
    assert error_of(r) == (403, "Authentication token expired", 2707)
    refserver.set_clock_skew(0)
    assert agent.post("stateless", stateless_pair()).status_code == 204
