"""Enrollment pieces that need no server: URLs, keys, names, refusals; odd answers via mocks."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import requests_mock
import uuid6

from agent.config import Config
from comms.credentials import Credentials, load_credentials, save_credentials
from comms.enroll import (
    EnrollmentUsage,
    EnrollRequest,
    check_key,
    default_connect_url,
    enroll,
    new_agent_id,
    new_key,
)
from comms.errors import AlreadyEnrolled, BadResponse, ServerRejected

MGMT = "https://manager.test:55000"


@pytest.mark.parametrize(
    ("enroll_url", "expected"),
    [
        ("https://manager:55000", "https://manager:27000"),
        ("https://manager:55000/", "https://manager:27000"),
        ("http://10.0.0.1:8080/mgmt", "http://10.0.0.1:27000"),
        ("https://[fd00::1]:55000", "https://[fd00::1]:27000"),
        ("https://wazuh.example.com", "https://wazuh.example.com"),
        ("https://wazuh.example.com/api/", "https://wazuh.example.com/api"),
    ],
)
def test_default_connect_url(enroll_url: str, expected: str) -> None:
    assert default_connect_url(enroll_url) == expected


def test_new_key_and_id() -> None:
    keys = {new_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9]{32}", k) for k in keys)
    ids = [new_agent_id() for _ in range(3)]
    assert all(uuid6.UUID(i).version == 7 for i in ids)
    assert ids == sorted(ids)  # time-ordered


@pytest.mark.parametrize("key", ["short", "a" * 33, "a" * 31 + "!", "ä" * 32])
def test_bad_keys_are_usage_errors(key: str) -> None:
    with pytest.raises(EnrollmentUsage) as info:
        check_key(key)
    assert info.value.exit_code == 2


def request(**kw: object) -> EnrollRequest:
    base: dict[str, object] = {"enroll_url": MGMT, "user": "wazuh", "password": "pw"}
    base.update(kw)
    return EnrollRequest(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"name": "n" * 129}, "129 characters long; at most 128"),
        ({"name": "  "}, "must not be empty"),
        ({"key": "abc"}, "exactly 32 characters"),
        ({"enroll_url": "manager:55000"}, "--enroll-url must be an http"),
        ({"connect_url": "ftp://x"}, "--connect-url must be an http"),
    ],
)
def test_bad_input_fails_before_anything_is_sent(
    make_config: Callable[..., Config], kw: dict[str, object], match: str
) -> None:
    with requests_mock.Mocker() as m:
        with pytest.raises(EnrollmentUsage, match=match):
            enroll(make_config(), request(**kw), facts={})
        assert m.call_count == 0


def test_enrolled_agent_is_refused_without_force(make_config: Callable[..., Config]) -> None:
    config = make_config()
    creds = Credentials(uuid="u", key="k" * 32, name="old", server_url="https://s:27000")
    save_credentials(config.data_dir, creds)
    with requests_mock.Mocker() as m:
        with pytest.raises(AlreadyEnrolled, match="already enrolled as old .u.*--force") as info:
            enroll(config, request(), facts={})
        assert info.value.exit_code == 2 and m.call_count == 0
    assert load_credentials(config.data_dir) == creds


def test_damaged_credentials_are_refused_without_force(make_config: Callable[..., Config]) -> None:
    config = make_config()
    config.data_dir.mkdir(parents=True)
    (config.data_dir / "credentials.json").write_text("{")
    with pytest.raises(AlreadyEnrolled, match="unreadable; use --force"):
        enroll(config, request(), facts={})


def mock_management(m: requests_mock.Mocker, token: object = "mgmt-token") -> None:
    m.post(MGMT + "/security/user/authenticate", json={"data": {"token": token}, "error": 0})


def test_body_and_headers_follow_the_protocol(make_config: Callable[..., Config]) -> None:
    facts = {"hostname": "h1", "architecture": "x86_64", "os": {"name": "D", "type": "Linux", "version": "12"}, "ip": ["10.0.0.5"]}  # fmt: skip
    config = make_config()
    with requests_mock.Mocker() as m:
        mock_management(m)
        m.post(MGMT + "/agents", status_code=201, json={"data": {}, "error": 0})
        creds = enroll(config, request(name="n1", key="K" * 32), facts=facts)
        login, post = m.request_history
        assert login.headers["Authorization"].startswith("Basic ")
        assert post.headers["Authorization"] == "Bearer mgmt-token"
        assert post.headers["Content-Type"] == "application/json"
        body = json.loads(post.body)
        assert body == {"id": creds.uuid, "name": "n1", "key": "K" * 32, "type": "Endpoint",
                        "version": body["version"], "host": facts}  # fmt: skip
        assert b" " not in post.body.replace(b'"D"', b"")  # compact JSON
    assert creds.server_url == "https://manager.test:27000"
    assert load_credentials(config.data_dir) == creds


@pytest.mark.parametrize(
    ("status", "answer", "match"),
    [
        (200, {"data": {"id": "x"}}, "refused the agent"),  # only 201 is success
        (400, {"message": "There is an agent with the same ID", "code": 1708}, "already exists"),
        (400, {"message": "name string too long", "code": 400}, "name string too long"),
    ],
)
def test_anything_but_201_is_a_refusal(make_config, status, answer, match) -> None:  # type: ignore[no-untyped-def]
    config = make_config()
    with requests_mock.Mocker() as m:
        mock_management(m)
        m.post(MGMT + "/agents", status_code=status, json=answer)
        with pytest.raises(ServerRejected, match=match) as info:
            enroll(config, request(), facts={})
    assert info.value.exit_code == 3
    assert not Path(config.data_dir / "credentials.json").exists()


@pytest.mark.parametrize("answer", ['{"data": ', '{"data": {}}', '{"data": {"token": ""}}'])
def test_garbled_login_answer_is_a_bad_response(make_config, answer: str) -> None:  # type: ignore[no-untyped-def]
    with requests_mock.Mocker() as m:
        m.post(MGMT + "/security/user/authenticate", text=answer)
        with pytest.raises(BadResponse):
            enroll(make_config(), request(), facts={})


def test_unwritable_data_dir_fails_before_the_server_is_asked(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    from comms.enroll import CredentialsNotSaved

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    config = make_config({"agent": {"data_dir": str(blocker / "data")}})
    with requests_mock.Mocker() as m:
        with pytest.raises(CredentialsNotSaved, match="cannot write to the data dir") as info:
            enroll(config, request(), facts={})
        assert m.call_count == 0  # no orphan agent on the server
    assert info.value.exit_code == 1
