"""ServerClient against requests-mock: renew-and-resend, statuses, garbled answers."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import requests_mock

from comms.api import ServerClient
from comms.credentials import Credentials
from comms.errors import BadResponse, ServerUnreachable
from comms.tokens import TokenManager
from core.config import Config
from tests.comms.helpers import FakeClock, make_jwt

URL = "https://server.test:27000"
API = URL + "/api/v1"
CREDS = Credentials(
    uuid="0190a6d2-0000-7000-8000-0000000000bb", key="k" * 32, name="h", server_url=URL
)


@pytest.fixture
def client(make_config: Callable[..., Config]) -> ServerClient:
    config = make_config()
    return ServerClient(config, TokenManager(config, CREDS, clock=FakeClock(), boot_id="b"))


def test_post_events_sends_the_body_as_is(client: ServerClient) -> None:
    token = make_jwt()
    with requests_mock.Mocker() as m:
        m.post(URL + "/api/v1/authentication", json={"token": token})
        m.post(API + "/events/stateless", status_code=204)
        reply = client.post_events("stateless", b'{"agent":{}}\n{"a":1}\n{"b":2}')
        assert reply.status == 204 and reply.ok
        sent = m.request_history[-1]
        assert sent.body == b'{"agent":{}}\n{"a":1}\n{"b":2}'
        assert sent.headers["Authorization"] == f"Bearer {token}"
        assert sent.headers["Content-Type"] == "application/json"
        assert sent.headers["Content-Length"] == str(len(sent.body))
        assert (
            sent.headers["User-Agent"].startswith("agentbus/")
            and "(Endpoint; " in sent.headers["User-Agent"]
        )
        assert "Content-Encoding" not in sent.headers


@pytest.mark.parametrize("refusal", [401, 403])
def test_refused_token_is_renewed_and_the_call_sent_once_more(
    client: ServerClient, refusal: int
) -> None:
    old, new = make_jwt(iat=1), make_jwt(iat=2)
    with requests_mock.Mocker() as m:
        m.post(URL + "/api/v1/authentication", [{"json": {"token": old}}, {"json": {"token": new}}])
        m.post(API + "/events/stateful", [{"status_code": refusal, "json": {"message": "x", "code": refusal}},
                                          {"status_code": 200, "json": {"results": []}}])  # fmt: skip
        reply = client.post_events("stateful", b"body")
        assert reply.status == 200
        posts = [r for r in m.request_history if r.path.endswith("/stateful")]
        assert [p.headers["Authorization"] for p in posts] == [f"Bearer {old}", f"Bearer {new}"]
        assert posts[1].headers["Content-Type"] == "application/json"
        assert posts[1].body == b"body"


def test_other_statuses_are_returned_to_the_caller(client: ServerClient) -> None:
    with requests_mock.Mocker() as m:
        m.post(URL + "/api/v1/authentication", json={"token": make_jwt()})
        m.post(API + "/events/stateless", status_code=429, headers={"Retry-After": "3"},
               json={"message": "Too many requests", "code": 429})  # fmt: skip
        reply = client.post_events("stateless", b"x")
        assert (reply.status, reply.retry_after(), reply.message()) == (
            429,
            3.0,
            "Too many requests",
        )


def test_commands_408_is_an_empty_list_and_200_the_commands(client: ServerClient) -> None:
    cmd = {"document_id": "d1", "action": {"name": "restart", "args": {}}}
    with requests_mock.Mocker() as m:
        m.post(URL + "/api/v1/authentication", json={"token": make_jwt()})
        m.get(API + "/commands", [{"status_code": 408, "json": {"message": "t", "code": 408}},
                                  {"status_code": 200, "json": {"commands": [cmd]}}])  # fmt: skip
        assert client.get_commands(5) == []
        assert client.get_commands(5) == [cmd]


@pytest.mark.parametrize("body", ['{"commands": [', '{"nothing": 1}', '{"commands": [1]}', "[]"])
def test_garbled_commands_answer_is_a_bad_response(client: ServerClient, body: str) -> None:
    with requests_mock.Mocker() as m:
        m.post(URL + "/api/v1/authentication", json={"token": make_jwt()})
        m.get(API + "/commands", text=body)
        with pytest.raises(BadResponse):
            client.get_commands(5)


def test_commands_server_trouble_is_unreachable_with_retry_after(client: ServerClient) -> None:
    with requests_mock.Mocker() as m:
        m.post(URL + "/api/v1/authentication", json={"token": make_jwt()})
        m.get(API + "/commands", status_code=503, headers={"Retry-After": "4"}, text="down")
        with pytest.raises(ServerUnreachable) as info:
            client.get_commands(5)
        assert info.value.retry_after == 4.0


def test_files_404_is_none(client: ServerClient) -> None:
    with requests_mock.Mocker() as m:
        m.post(URL + "/api/v1/authentication", json={"token": make_jwt()})
        m.get(API + "/files?file_name=g1.yml", content=b"a: 1\n")
        m.get(
            API + "/files?file_name=nope.yml",
            status_code=404,
            json={"message": "File does not exist", "code": 404},
        )
        assert client.get_file("g1.yml") == b"a: 1\n"
        assert client.get_file("nope.yml") is None


def test_connection_refused_is_unreachable(make_config: Callable[..., Config]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        config = make_config(
            {"agent": {"server_url": f"http://127.0.0.1:{port}", "connect_timeout": 2}}
        )
        client = ServerClient(config, TokenManager(config, CREDS))
        with pytest.raises(ServerUnreachable, match="connection refused") as info:
            client.post_events("stateless", b"x")
        assert info.value.exit_code == 3


def test_unknown_kind_is_a_programming_error(client: ServerClient) -> None:
    with pytest.raises(ValueError):
        client.post_events("other", b"x")  # type: ignore[arg-type]


def test_auth_status_of_a_service(client: ServerClient, make_config: Callable[..., Config]) -> None:
    from comms.api import auth_status
    from comms.credentials import save_credentials

    assert auth_status(client)["state"] == "pending"  # type: ignore[index]
    assert auth_status(object()) is None  # a test double without tokens
    assert auth_status(None) is None
    config = make_config()
    auth = auth_status(None, config.data_dir)  # no client built yet, no credentials
    assert auth is not None and auth["state"] == "not_enrolled"
    assert "agentbus register" in auth["message"] and auth["next_try_in"] is None
    save_credentials(config.data_dir, CREDS)
    auth = auth_status(None, config.data_dir)  # enrolled: it authenticates when needed
    assert auth is not None and (auth["state"], auth["message"]) == ("pending", None)
