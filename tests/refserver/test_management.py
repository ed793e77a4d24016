"""Management API (PROTOCOL.md §1): user authentication and enrollment, good and bad forms."""

from __future__ import annotations

import sqlite3

import pytest
import requests

from tests.refserver.helpers import enroll, enrollment_body, error_of, management_token


def _enroll(url: str, body: object, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{url}/agents", json=body, headers=headers, timeout=10)


def test_user_authenticate_gives_a_token_in_the_real_shape(refserver) -> None:
    r = requests.post(
        f"{refserver.url}/security/user/authenticate", auth=("wazuh", "wazuh"), timeout=10
    )
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"data", "error"} and body["error"] == 0
    assert isinstance(body["data"]["token"], str) and body["data"]["token"].count(".") == 2


@pytest.mark.parametrize("auth", [("wazuh", "wrong"), ("root", "wazuh"), None])
def test_user_authenticate_refuses_bad_credentials_with_401(refserver, auth) -> None:
    r = requests.post(f"{refserver.url}/security/user/authenticate", auth=auth, timeout=10)
    assert error_of(r) == (401, "Invalid credentials", 401)


def test_configured_admin_user_is_the_one_accepted(refserver_factory) -> None:
    server = refserver_factory(user="admin", password="s3cret")
    assert management_token(server.url, "admin", "s3cret")
    r = requests.post(f"{server.url}/security/user/authenticate", auth=("wazuh", "wazuh"))
    assert r.status_code == 401


def test_enrollment_201_and_only_a_salted_hash_of_the_key_is_stored(refserver) -> None:
    body = enrollment_body()
    r = _enroll(refserver.url, body, management_token(refserver.url))
    assert r.status_code == 201
    assert r.json()["error"] == 0
    [agent] = refserver.agents()
    assert agent["id"] == body["id"] and agent["name"] == "h1"
    assert agent["host"]["os"]["type"] == "Linux"
    db = sqlite3.connect(refserver.data_dir / "server.db")
    (stored,) = db.execute("SELECT key_hash FROM agents").fetchone()
    db.close()
    assert body["key"] not in stored
    assert stored.startswith("pbkdf2_sha256$")
    for name in ("server.db", "server.db-wal", "keys/private.pem"):
        assert (refserver.data_dir / name).stat().st_mode & 0o077 == 0, name
    for path in refserver.data_dir.rglob("*"):
        if path.is_file():
            assert body["key"].encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"key": "a" * 31}, "key string should have 32 characters"),
        ({"key": "a" * 33}, "key string should have 32 characters"),
        ({"key": "a" * 31 + "!"}, "key string should match pattern '^[A-Za-z0-9]{32}$'"),
        ({"key": 12345}, "key input should be a valid string"),
        ({"id": "not-a-uuid"}, "id input should be a valid UUID"),
        ({"name": "n" * 129}, "name string should have between 1 and 128 characters"),
        ({"name": ""}, "name string should have between 1 and 128 characters"),
        ({"host": {"ip": "10.0.0.5"}}, "host.ip input should be a valid list"),
        ({"host": "h1"}, "host input should be a valid dictionary"),
    ],
)
def test_enrollment_rejects_bad_fields_with_400(refserver, change, message) -> None:
    r = _enroll(refserver.url, enrollment_body(**change), management_token(refserver.url))
    assert error_of(r) == (400, message, 400)
    assert refserver.agents() == []


@pytest.mark.parametrize("field", ["id", "name", "key", "type", "version"])
def test_enrollment_requires_each_field(refserver, field) -> None:
    body = enrollment_body()
    del body[field]
    r = _enroll(refserver.url, body, management_token(refserver.url))
    assert error_of(r) == (400, f"{field} field required", 400)


def test_enrollment_of_an_existing_id_is_400_error_1708(refserver) -> None:
    token = management_token(refserver.url)
    body = enrollment_body()
    assert _enroll(refserver.url, body, token).status_code == 201
    again = enrollment_body(agent_id=body["id"])
    assert error_of(_enroll(refserver.url, again, token)) == (
        400,
        "There is an agent with the same ID",
        1708,
    )


def test_enrollment_needs_a_management_token(refserver) -> None:
    body = enrollment_body()
    assert error_of(_enroll(refserver.url, body, None)) == (401, "Not authenticated", 401)
    assert _enroll(refserver.url, body, "not.a.token").status_code == 401
    # An agent's comms token is not a management token.
    agent = enroll(refserver.url)
    assert _enroll(refserver.url, body, agent.token).status_code == 401


def test_enrollment_body_must_be_json(refserver) -> None:
    token = management_token(refserver.url)
    r = requests.post(
        f"{refserver.url}/agents",
        data=b"{not json",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert error_of(r) == (400, "body invalid JSON", 400)
    r = requests.post(
        f"{refserver.url}/agents",
        data=b"[]",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert error_of(r) == (400, "body input should be a valid dictionary", 400)


def test_key_hash_rounds_are_configurable_and_recorded_in_the_hash(refserver_factory) -> None:
    server = refserver_factory(key_hash_rounds=100_000)
    enroll(server.url)
    db = sqlite3.connect(server.data_dir / "server.db")
    (stored,) = db.execute("SELECT key_hash FROM agents").fetchone()
    db.close()
    assert stored.split("$")[1] == "100000"
