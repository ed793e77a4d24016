"""A server that answers with a redirect gets neither the key, the token nor the events
re-sent anywhere: the agent follows no redirect (over real HTTP)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from comms.api import ServerClient
from comms.credentials import Credentials
from comms.enroll import EnrollRequest, enroll
from comms.errors import Redirected
from comms.tokens import TokenManager
from core.config import Config
from tests.comms.helpers import FakeClock, make_jwt


class _Server:
    """A loopback HTTP server recording every request; answers ``reply(path)``."""

    def __init__(self, reply: Callable[[str], tuple[int, dict[str, str], bytes]]) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.requests.append((self.command, self.path, self.rfile.read(length)))
                status, headers, body = reply(self.path)
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _any

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[_Server, _Server]]:
    """(the agent's server, which redirects everything, the origin it redirects to)."""
    elsewhere = _Server(lambda _path: (200, {"Content-Type": "application/json"}, b"{}"))
    redirecting = _Server(lambda path: (307, {"Location": elsewhere.url + path}, b""))
    yield redirecting, elsewhere
    redirecting.close()
    elsewhere.close()


def _tokens(config: Config) -> TokenManager:
    creds = Credentials(
        uuid="0190a6d2-0000-7000-8000-0000000000bb",
        key="k" * 32,
        name="h",
        server_url=config.agent.server_url,
    )
    return TokenManager(config, creds, clock=FakeClock(), boot_id="b")


@pytest.mark.timeout(30)
def test_authentication_redirected_sends_the_key_nowhere(make_config, servers) -> None:
    redirecting, elsewhere = servers
    config = make_config({"agent": {"server_url": redirecting.url}})
    tokens = _tokens(config)
    with pytest.raises(Redirected, match="HTTP 307, a redirect to http://127.0.0.1"):
        tokens._authenticate()
    assert [r[1] for r in redirecting.requests] == ["/api/v1/authentication"]
    assert elsewhere.requests == []  # the key went nowhere else


@pytest.mark.timeout(30)
def test_a_redirected_events_post_is_an_error_not_a_delivery(make_config, servers) -> None:
    redirecting, elsewhere = servers
    config = make_config({"agent": {"server_url": redirecting.url}})
    tokens = _tokens(config)
    tokens.token = lambda: make_jwt()  # type: ignore[method-assign]  # one we hold already
    client = ServerClient(config, tokens)
    with pytest.raises(Redirected):
        client.post_events("stateless", b'{"agent":{}}\n{"module":"m"}\n{"a":1}')
    with pytest.raises(Redirected):
        client.get_commands(5)
    assert elsewhere.requests == []


@pytest.mark.timeout(30)
def test_enrollment_redirected_is_refused_and_the_password_goes_nowhere(
    make_config, servers
) -> None:
    redirecting, elsewhere = servers
    config = make_config()
    request = EnrollRequest(
        enroll_url=redirecting.url, user="wazuh", password="secret", connect_url=redirecting.url
    )
    with pytest.raises(Redirected):
        enroll(config, request, facts={"hostname": "h"})
    assert elsewhere.requests == []
