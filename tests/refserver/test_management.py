"""Management API (docs/protocol.md §1): authentication and enrollment, good and bad forms.

Every error is in the management shape ``{"title", "detail"}`` with the real validator's words.
"""

from __future__ import annotations

import sqlite3
import uuid

import pytest
import requests
import uuid6

from tests.refserver.helpers import enroll, enrollment_body, management_token, problem_of

NAME_RULE = r"^[\w\-.%]+$"


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
    assert problem_of(r) == (401, "Unauthorized", "Invalid credentials")


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
    ("change", "title", "detail"),
    [
        ({"key": "a" * 31}, "Invalid key length", "The key must be 32 characters long"),
        ({"key": "a" * 33}, "Invalid key length", "The key must be 32 characters long"),
        (
            {"key": "a" * 31 + "!"},
            "Bad Request",
            "'" + "a" * 31 + "!' does not match '^[A-Za-z0-9]{32}$' - 'key'",
        ),
        ({"key": 12345}, "Bad Request", "12345 is not of type 'string' - 'key'"),
        ({"id": "not-a-uuid"}, "Bad Request", "'not-a-uuid' is not a 'uuid4' - 'id'"),
        ({"name": "n" * 129}, "Bad Request", f"'{'n' * 129}' is too long - 'name'"),
        ({"name": ""}, "Bad Request", f"'' does not match '{NAME_RULE}' - 'name'"),
        ({"name": "web 01"}, "Bad Request", f"'web 01' does not match '{NAME_RULE}' - 'name'"),
        ({"name": "h/1"}, "Bad Request", f"'h/1' does not match '{NAME_RULE}' - 'name'"),
        (
            {"host": {"ip": "10.0.0.5"}},
            "Bad Request",
            "'10.0.0.5' is not of type 'array' - 'host.ip'",
        ),
        ({"host": "h1"}, "Bad Request", "'h1' is not of type 'object' - 'host'"),
        ({"host": {"ip": [5]}}, "Bad Request", "5 is not of type 'string' - 'host.ip.0'"),
        (
            {"host": {"os": {"type": 1}}},
            "Bad Request",
            "1 is not of type 'string' - 'host.os.type'",
        ),
    ],
)
def test_enrollment_rejects_bad_fields_with_400(refserver, change, title, detail) -> None:
    r = _enroll(refserver.url, enrollment_body(**change), management_token(refserver.url))
    assert problem_of(r) == (400, title, detail)
    assert refserver.agents() == []


@pytest.mark.parametrize("name", ["h1", "web-01.example.com", "a_b%c", "n" * 128, "é"])
def test_enrollment_accepts_names_the_rule_allows(refserver, name) -> None:
    r = _enroll(refserver.url, enrollment_body(name=name), management_token(refserver.url))
    assert r.status_code == 201, r.text
    assert [a["name"] for a in refserver.agents()] == [name]


def test_a_uuid7_id_is_refused_by_default_with_the_validators_words(refserver) -> None:
    agent_id = str(uuid6.uuid7())
    r = _enroll(refserver.url, enrollment_body(agent_id), management_token(refserver.url))
    assert r.status_code == 400
    assert r.json() == {"title": "Bad Request", "detail": f"'{agent_id}' is not a 'uuid4' - 'id'"}
    assert refserver.agents() == []


@pytest.mark.parametrize("make", [uuid.uuid1, lambda: uuid.uuid3(uuid.NAMESPACE_DNS, "h1")])
def test_ids_of_other_versions_are_refused(refserver, make) -> None:
    agent_id = str(make())
    r = _enroll(refserver.url, enrollment_body(agent_id), management_token(refserver.url))
    assert problem_of(r) == (400, "Bad Request", f"'{agent_id}' is not a 'uuid4' - 'id'")


def test_allow_uuid7_accepts_v7_and_v4_ids_but_no_other(refserver_factory) -> None:
    server = refserver_factory(allow_uuid7=True)
    token = management_token(server.url)
    v7, v4, v1 = str(uuid6.uuid7()), str(uuid.uuid4()), str(uuid.uuid1())
    assert _enroll(server.url, enrollment_body(v7), token).status_code == 201
    assert _enroll(server.url, enrollment_body(v4), token).status_code == 201
    r = _enroll(server.url, enrollment_body(v1), token)
    assert problem_of(r) == (400, "Bad Request", f"'{v1}' is not a 'uuid4' - 'id'")
    assert {a["id"] for a in server.agents()} == {v7, v4}


@pytest.mark.parametrize("field", ["id", "name", "key", "type", "version"])
def test_enrollment_requires_each_field(refserver, field) -> None:
    body = enrollment_body()
    del body[field]
    r = _enroll(refserver.url, body, management_token(refserver.url))
    assert problem_of(r) == (400, "Bad Request", f"'{field}' is a required property")


def test_enrollment_of_an_existing_id_is_400_error_1708(refserver) -> None:
    token = management_token(refserver.url)
    body = enrollment_body()
    assert _enroll(refserver.url, body, token).status_code == 201
    again = enrollment_body(agent_id=body["id"])
    r = _enroll(refserver.url, again, token)
    assert r.status_code == 400
    assert r.json() == {
        "title": "Bad Request",
        "detail": "There is an agent with the same ID",
        "error": 1708,
    }


def test_enrollment_needs_a_management_token(refserver) -> None:
    body = enrollment_body()
    r = _enroll(refserver.url, body, None)
    assert problem_of(r) == (401, "Unauthorized", "No authorization token provided")
    r = _enroll(refserver.url, body, "not.a.token")
    assert problem_of(r) == (401, "Unauthorized", "Invalid token")
    # An agent's comms token is not a management token.
    agent = enroll(refserver.url)
    assert problem_of(_enroll(refserver.url, body, agent.token))[:1] == (401,)


def test_enrollment_body_must_be_json_of_an_object(refserver) -> None:
    token = management_token(refserver.url)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    url = f"{refserver.url}/agents"
    r = requests.post(url, data=b"{not json", headers=headers, timeout=10)
    assert problem_of(r) == (400, "Bad Request", "Request body is not valid JSON")
    r = requests.post(url, data=b"[]", headers=headers, timeout=10)
    assert problem_of(r) == (400, "Bad Request", "[] is not of type 'object'")


def test_enrollment_content_type_must_be_json(refserver) -> None:
    token = management_token(refserver.url)
    r = requests.post(
        f"{refserver.url}/agents",
        data=b"{}",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
        timeout=10,
    )
    assert problem_of(r) == (
        415,
        "Unsupported Media Type",
        "Invalid Content-type (text/plain), expected ['application/json']",
    )


def test_key_hash_rounds_are_configurable_and_recorded_in_the_hash(refserver_factory) -> None:
    server = refserver_factory(key_hash_rounds=100_000)
    enroll(server.url)
    db = sqlite3.connect(server.data_dir / "server.db")
    (stored,) = db.execute("SELECT key_hash FROM agents").fetchone()
    db.close()
    assert stored.split("$")[1] == "100000"
