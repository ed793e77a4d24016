"""What a hostile server sends back is bounded: every answer is read raw, streamed, under the
byte cap of its endpoint, and a compressed answer is refused, never inflated (real HTTP on a
loopback port, the attacks performed for real)."""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bus.executor import Command
from bus.results import ResultCode
from commander.agent_executor import GROUPS_DIR, AgentActions
from comms.api import ServerClient
from comms.credentials import Credentials, save_credentials
from comms.enroll import EnrollRequest, enroll
from comms.errors import BadResponse, Compressed, TooLarge
from comms.tokens import TokenManager
from core.config import Config
from tests.comms.hostile import (
    HostileServer,
    chunked_forever,
    declared,
    fixed,
    gzip_bomb,
    until_closed,
)

UUID = "0190a6d2-0000-4000-8000-0000000000cc"
SMALL = 64 * 1024


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    server = HostileServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """~1 MB of gzip that inflates to 1 GiB."""
    return gzip_bomb(1024**3)


def _config(make_config: Callable[..., Config], server: HostileServer, **agent: object) -> Config:
    config = make_config({"agent": {"server_url": server.url, "read_timeout": "10s", **agent}})
    save_credentials(config.data_dir, _credentials(server.url))
    return config


def _credentials(url: str) -> Credentials:
    return Credentials(uuid=UUID, key="k" * 32, name="h", server_url=url)


def _client(config: Config) -> ServerClient:
    creds = _credentials(config.agent.server_url)
    return ServerClient(config, TokenManager(config, creds, boot_id="b"))


def _set_group(config: Config, client: ServerClient, *groups: str) -> tuple[ResultCode, str]:
    actions = AgentActions(config, client)
    return actions.set_group(Command(id="c1", name="set-group", args={"groups": list(groups)}))


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def test_every_request_asks_for_no_compression(make_config, hostile: HostileServer) -> None:
    hostile.routes["/api/v1/commands"] = fixed(b'{"commands": []}')
    client = _client(_config(make_config, hostile))
    assert client.get_commands(5) == []
    for path in ("/api/v1/authentication", "/api/v1/commands"):
        assert [h.get("Accept-Encoding") for h in hostile.headers_of(path)] == ["identity"]


@pytest.mark.timeout(60)
def test_a_gzip_bomb_as_a_group_file_is_refused_uninflated_and_nothing_is_written(
    make_config, hostile: HostileServer, bomb: bytes
) -> None:
    config = _config(make_config, hostile)
    folder = config.data_dir / GROUPS_DIR
    folder.mkdir(parents=True)
    (folder / "web.yml").write_bytes(b"old: true\n")
    hostile.routes["/api/v1/files"] = fixed(
        bomb, {"Content-Encoding": "gzip", "Content-Type": "application/x-yaml"}
    )
    before = _maxrss_mb()
    code, message = _set_group(config, _client(config), "web")
    grown = _maxrss_mb() - before
    assert code == ResultCode.FAILURE
    assert message.startswith("Cannot fetch web.yml: ") and "compressed (gzip)" in message
    # The previous file is intact, and no temporary file was left.
    assert (folder / "web.yml").read_bytes() == b"old: true\n"
    assert sorted(p.name for p in folder.iterdir()) == ["web.yml"]
    # Inflated, the body would be 1 GiB: the peak RSS of this process would jump by that.
    assert grown < 64, f"peak RSS grew by {grown:.0f} MB"


def test_a_file_over_the_cap_writes_nothing_and_the_previous_file_stays(
    make_config, hostile: HostileServer
) -> None:
    config = _config(make_config, hostile, max_download_bytes="64KB")
    folder = config.data_dir / GROUPS_DIR
    folder.mkdir(parents=True)
    (folder / "web.yml").write_bytes(b"old: true\n")
    hostile.routes["/api/v1/files"] = fixed(b"a" * (SMALL + 1))
    code, message = _set_group(config, _client(config), "web")
    assert code == ResultCode.FAILURE
    assert "larger than 65536 bytes (the cap set by [agent] max_download_bytes)" in message
    assert (folder / "web.yml").read_bytes() == b"old: true\n"
    assert sorted(p.name for p in folder.iterdir()) == ["web.yml"]
    # The legitimate path: a file of exactly the cap is written (a YAML comment: a group
    # file that changes nothing, since every file is checked as configuration).
    body = b"#" + b"a" * (SMALL - 2) + b"\n"
    hostile.routes["/api/v1/files"] = fixed(body)
    assert _set_group(config, _client(config), "web")[0] == ResultCode.SUCCESS
    assert (folder / "web.yml").read_bytes() == body


def test_a_huge_content_length_is_refused_before_reading_the_body(
    make_config, hostile: HostileServer
) -> None:
    hostile.routes["/api/v1/files"] = declared(10 * 1024**3, b"z" * 1024)
    client = _client(_config(make_config, hostile))
    started = time.monotonic()
    with pytest.raises(TooLarge, match=r"\[agent\] max_download_bytes") as info:
        client.get_file("web.yml")
    assert time.monotonic() - started < 5
    assert info.value.limit == 16 * 1024**2 and info.value.key == "[agent] max_download_bytes"


@pytest.mark.timeout(30)
def test_a_body_without_a_length_is_cut_at_the_cap(make_config, hostile: HostileServer) -> None:
    hostile.routes["/api/v1/files"] = until_closed()
    client = _client(_config(make_config, hostile, max_download_bytes="1MB"))
    with pytest.raises(TooLarge, match="for file web.yml"):
        client.get_file("web.yml")
    # It stopped reading at the cap; what the server pushed beyond sat in socket buffers.
    assert hostile.written < 1024**2 + 16 * 1024**2


@pytest.mark.timeout(30)
def test_an_endless_chunked_long_poll_answer_is_cut_at_its_cap(
    make_config, hostile: HostileServer
) -> None:
    hostile.routes["/api/v1/commands"] = chunked_forever()
    config = make_config(
        {"agent": {"server_url": hostile.url}, "commander": {"max_poll_bytes": "256KB"}}
    )
    save_credentials(config.data_dir, _credentials(hostile.url))
    with pytest.raises(TooLarge, match=r"for commands .*\[commander\] max_poll_bytes"):
        _client(config).get_commands(10)


@pytest.mark.timeout(30)
def test_a_small_content_length_with_an_endless_chunked_body_is_not_trusted(
    make_config, hostile: HostileServer
) -> None:
    """Both headers: HTTP says chunked wins, so the small length must not be believed."""
    frame = b"10000\r\n" + b"q" * 65536 + b"\r\n"

    def liar(h):  # type: ignore[no-untyped-def]
        h.send_response(200)
        h.send_header("Content-Length", "10")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.close_connection = True
        try:
            for _ in range(4096):
                h.write(frame)
        except OSError:
            pass

    hostile.routes["/api/v1/files"] = liar
    client = _client(_config(make_config, hostile, max_download_bytes="1MB"))
    with pytest.raises(BadResponse):  # TooLarge, or refused as malformed by http.client
        client.get_file("web.yml")


def test_a_content_length_smaller_than_the_body_gives_only_the_declared_bytes(
    make_config, hostile: HostileServer
) -> None:
    hostile.routes["/api/v1/files"] = declared(100, b"b" * 4 * 1024**2)
    client = _client(_config(make_config, hostile, max_download_bytes="1MB"))
    assert client.get_file("web.yml") == b"b" * 100


def test_an_error_answer_is_capped_by_max_response_bytes(
    make_config, hostile: HostileServer
) -> None:
    hostile.routes["/api/v1/files"] = fixed(b"e" * (2 * 1024**2), status=500)
    client = _client(_config(make_config, hostile))  # downloads may be 16 MB, errors 1 MB
    with pytest.raises(TooLarge, match=r"\[agent\] max_response_bytes"):
        client.get_file("web.yml")


def test_an_events_answer_over_the_cap_is_a_bad_response(
    make_config, hostile: HostileServer
) -> None:
    hostile.routes["/api/v1/events/stateful"] = until_closed(b'{"results": [' * 4096)
    client = _client(_config(make_config, hostile, max_response_bytes="256KB"))
    with pytest.raises(TooLarge, match="for stateful events"):
        client.post_events("stateful", b"{}")


def test_a_compressed_commands_answer_is_refused(
    make_config, hostile: HostileServer, bomb: bytes
) -> None:
    hostile.routes["/api/v1/commands"] = fixed(bomb, {"Content-Encoding": "gzip"})
    with pytest.raises(Compressed, match="compressed"):
        _client(_config(make_config, hostile)).get_commands(10)


def test_an_authentication_answer_over_the_cap_is_refused(
    make_config, hostile: HostileServer
) -> None:
    config = _config(make_config, hostile, max_response_bytes="64KB")
    tokens = TokenManager(config, _credentials(hostile.url), boot_id="b")
    big = json.dumps({"token": "t" * (4 * SMALL)}).encode()
    hostile.routes["/api/v1/authentication"] = fixed(big)
    with pytest.raises(TooLarge, match="for authentication"):
        tokens._authenticate()


def test_an_enrollment_login_answer_over_the_cap_is_refused(
    make_config, hostile: HostileServer
) -> None:
    hostile.routes["/security/user/authenticate"] = until_closed()
    config = _config(make_config, hostile, max_response_bytes="64KB")
    request = EnrollRequest(enroll_url=hostile.url, user="u", password="p", name="h", force=True)
    (config.data_dir / "credentials.json").unlink()
    with pytest.raises(TooLarge, match="for enrollment login") as info:
        enroll(config, request, facts={})
    assert info.value.exit_code == 3
    assert not Path(config.data_dir, "credentials.json").exists()
