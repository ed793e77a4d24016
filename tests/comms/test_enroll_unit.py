"""Enrollment pieces that need no server: URLs, keys, names, refusals; odd answers via mocks."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import requests_mock
import uuid6

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
from core.config import Config

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


# -- the id's version: v7, and v4 when the server accepts only v4 ---------------------------


def wrong_version(agent_id: str) -> dict[str, object]:
    """The 6.0 server's answer to an id that is not a v4 (management API error shape)."""
    return {"title": "Bad Request", "detail": f"'{agent_id}' is not a 'uuid4' - 'id'"}


def v4_only(req, context):  # type: ignore[no-untyped-def]
    agent_id = json.loads(req.body)["id"]
    if uuid6.UUID(agent_id).version != 4:
        context.status_code = 400
        return wrong_version(agent_id)
    context.status_code = 201
    return {"data": {}, "error": 0}


def test_a_refused_v7_is_enrolled_again_at_once_as_v4(make_config: Callable[..., Config]) -> None:
    notices: list[str] = []
    with requests_mock.Mocker() as m:
        mock_management(m)
        m.post(MGMT + "/agents", json=v4_only)
        creds = enroll(make_config(), request(name="n1"), facts={}, notice=notices.append)
        first, second = (json.loads(r.body) for r in m.request_history[1:])
    assert uuid6.UUID(first["id"]).version == 7 and uuid6.UUID(second["id"]).version == 4
    assert second == {**first, "id": second["id"]}  # the same agent, only the id changed
    assert creds.uuid == second["id"]
    assert notices == [
        f"the server accepts only UUID v4 agent ids (it refused v7 {first['id']}); "
        f"enrolled with v4 id {creds.uuid} instead"
    ]


def test_a_server_that_takes_v7_keeps_it_and_says_nothing(
    make_config: Callable[..., Config],
) -> None:
    notices: list[str] = []
    with requests_mock.Mocker() as m:
        mock_management(m)
        m.post(MGMT + "/agents", status_code=201, json={"data": {}, "error": 0})
        creds = enroll(make_config(), request(), facts={}, notice=notices.append)
        assert m.call_count == 2
    assert uuid6.UUID(creds.uuid).version == 7 and notices == []


@pytest.mark.parametrize("version", [4, 7])
def test_a_pinned_version_is_sent(make_config: Callable[..., Config], version: int) -> None:
    with requests_mock.Mocker() as m:
        mock_management(m)
        m.post(MGMT + "/agents", status_code=201, json={"data": {}, "error": 0})
        creds = enroll(make_config(), request(uuid_version=version), facts={})
    assert uuid6.UUID(creds.uuid).version == version


def test_a_pinned_v7_refused_is_a_clear_error_without_fallback(
    make_config: Callable[..., Config],
) -> None:
    config = make_config()
    with requests_mock.Mocker() as m:
        mock_management(m)
        m.post(MGMT + "/agents", json=v4_only)
        with pytest.raises(ServerRejected) as info:
            enroll(config, request(uuid_version=7), facts={})
        assert m.call_count == 2  # login and one POST: no second id
        refused = json.loads(m.request_history[1].body)["id"]
    text = str(info.value)
    assert info.value.exit_code == 3 and "\n" not in text
    assert text == (
        f"the server refused the agent's UUID v7 id: '{refused}' is not a 'uuid4' - 'id' "
        "(HTTP 400); it accepts only v4 ids: use --uuid-version 4, or leave the flag out"
    )
    assert not (config.data_dir / "credentials.json").exists()


def test_a_v4_refused_for_another_reason_says_both(make_config: Callable[..., Config]) -> None:
    answers = iter([None, {"title": "Bad Request", "detail": "name string too long"}])

    def answer(req, context):  # type: ignore[no-untyped-def]
        doc = next(answers) or wrong_version(json.loads(req.body)["id"])
        context.status_code = 400
        return doc

    with requests_mock.Mocker() as m:
        mock_management(m)
        m.post(MGMT + "/agents", json=answer)
        with pytest.raises(ServerRejected, match="name string too long .with a v4 id, after"):
            enroll(make_config(), request(), facts={})


def test_the_wrong_version_of_another_id_is_not_mistaken(
    make_config: Callable[..., Config],
) -> None:
    # only a refusal that names *our* id for its version triggers the v4 retry
    with requests_mock.Mocker() as m:
        mock_management(m)
        m.post(MGMT + "/agents", status_code=400, json=wrong_version("something-else"))
        with pytest.raises(ServerRejected, match="is not a 'uuid4'"):
            enroll(make_config(), request(), facts={})
        assert m.call_count == 2


# -- names: the server's rule, checked before anything is sent ------------------------------


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("web 01", r"^the agent name 'web 01' is not valid: ' ' not allowed"),
        ("a/b:c", r"'/:' not allowed \(only letters, digits, '_', '-', '.', '%'\)$"),
        ("web-01\n", r"'web-01\\n' is not valid: '\\n' not allowed"),
    ],
)
def test_names_the_server_refuses_fail_before_anything_is_sent(
    make_config: Callable[..., Config], name: str, match: str
) -> None:
    with requests_mock.Mocker() as m:
        with pytest.raises(EnrollmentUsage, match=match) as info:
            enroll(make_config(), request(name=name), facts={})
        assert m.call_count == 0 and info.value.exit_code == 2


@pytest.mark.parametrize("name", ["web-01", "host_1.example.com", "50%", "café", "n" * 128])
def test_names_the_server_accepts(make_config: Callable[..., Config], name: str) -> None:
    with requests_mock.Mocker() as m:
        mock_management(m)
        m.post(MGMT + "/agents", status_code=201, json={"data": {}, "error": 0})
        assert enroll(make_config(), request(name=name), facts={}).name == name


@pytest.mark.parametrize(
    ("hostname", "match"),
    [
        ("my host", r"^the host name 'my host' is not a valid agent name: .*; give a name with --name$"),
        ("h" * 130, r"^the host name is 130 characters long; at most 128; give a name with --name$"),
    ],
)  # fmt: skip
def test_a_hostname_that_is_no_valid_name_points_at_the_flag(
    make_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch, hostname: str, match: str
) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: hostname)
    with requests_mock.Mocker() as m:
        with pytest.raises(EnrollmentUsage, match=match):
            enroll(make_config(), request(), facts={})
        assert m.call_count == 0


# -- the management API's error shapes ------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        ({"title": "Bad Request", "detail": "'name' is too long"}, r": 'name' is too long \(HTTP 400\)$"),
        ({"title": "Bad Request"}, r": Bad Request \(HTTP 400\)$"),
        ({"title": "Bad Request", "detail": "There is an agent with the same ID", "error": 1708},
         "already exists"),
        ({"detail": ["x", {"y": 1}]}, r': \["x",\{"y":1\}\] \(HTTP 400\)$'),
        ("<html>\n<b>bad\ngateway</b></html>", r": <html> <b>bad gateway</b></html> \(HTTP 400\)$"),
    ],
)  # fmt: skip
def test_every_refusal_shape_is_one_clear_line(make_config, answer, match: str) -> None:  # type: ignore[no-untyped-def]
    with requests_mock.Mocker() as m:
        mock_management(m)
        if isinstance(answer, str):
            m.post(MGMT + "/agents", status_code=400, text=answer)
        else:
            m.post(MGMT + "/agents", status_code=400, json=answer)
        with pytest.raises(ServerRejected, match=match) as info:
            enroll(make_config(), request(), facts={})
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("the server refused the agent: ")


def test_login_refusal_in_the_management_shape(make_config: Callable[..., Config]) -> None:
    with requests_mock.Mocker() as m:
        m.post(MGMT + "/security/user/authenticate", status_code=401,
               json={"title": "Unauthorized", "detail": "Invalid credentials"})  # fmt: skip
        with pytest.raises(ServerRejected) as info:
            enroll(make_config(), request(), facts={})
    assert str(info.value) == (
        f"enrollment login refused: wrong user or password for {MGMT} (Invalid credentials) "
        "(HTTP 401)"
    )
