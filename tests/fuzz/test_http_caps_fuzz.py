"""Fuzz the byte caps on what the server sends back: answers just under, at and just over
every cap, in every framing (Content-Length, close-delimited, chunked in pieces of any
size), over real HTTP to a hostile loopback server. At or under the cap the body arrives
byte for byte; over it the call fails with ``TooLarge`` naming the cap's key. Nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comms.api import ServerClient
from comms.credentials import Credentials
from comms.errors import ServerUnreachable, TooLarge
from comms.tokens import TokenManager
from core.config import Config, config_from_dict
from tests.comms.hostile import HostileServer, streamed
from tests.fuzz.strategies import fuzz_settings

#: the caps set for these tests (small, so many examples run in seconds)
POLL_CAP, DOWNLOAD_CAP, RESPONSE_CAP = 24 * 1024, 40 * 1024, 8 * 1024
FRAMINGS = st.sampled_from(["length", "close", "chunked"])
#: how far from the cap a body is: mostly right around it, sometimes well off
DELTAS = st.one_of(st.integers(-8, 8), st.integers(-4096, 4096))
PIECES = st.one_of(st.integers(1, 16), st.integers(1, 70000))


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HostileServer, ServerClient]]:
    server = HostileServer()
    data = Path(tmp_path_factory.mktemp("caps"))
    config: Config = config_from_dict(
        {
            "agent": {
                "data_dir": str(data / "data"),
                "run_dir": str(data / "run"),
                "server_url": server.url,
                "max_download_bytes": DOWNLOAD_CAP,
                "max_response_bytes": RESPONSE_CAP,
            },
            "commander": {"max_poll_bytes": POLL_CAP},
        }
    )
    creds = Credentials(uuid="0190a6d2-0000-4000-8000-0000000000ff", key="k" * 32, name="f",
                        server_url=server.url)  # fmt: skip
    yield server, ServerClient(config, TokenManager(config, creds, boot_id="b"))
    server.close()


def _commands_body(size: int) -> bytes:
    """A valid commands answer of exactly ``size`` bytes (size ≥ 30)."""
    head = b'{"commands": [], "pad": "'
    return head + b"p" * (size - len(head) - 2) + b'"}'


@fuzz_settings(max_examples=80)
@given(delta=DELTAS, framing=FRAMINGS, piece=PIECES, fill=st.binary(min_size=1, max_size=16))
def test_file_downloads_near_the_cap(
    rig, delta: int, framing: str, piece: int, fill: bytes
) -> None:  # type: ignore[no-untyped-def]
    server, client = rig
    size = max(0, DOWNLOAD_CAP + delta)
    body = (fill * (size // len(fill) + 1))[:size]
    server.routes["/api/v1/files"] = streamed(body, framing, piece)
    if size <= DOWNLOAD_CAP:
        assert client.get_file("g.yml") == body
    else:
        with pytest.raises(TooLarge, match=r"\[agent\] max_download_bytes"):
            client.get_file("g.yml")


@fuzz_settings(max_examples=60)
@given(delta=DELTAS, framing=FRAMINGS, piece=PIECES)
def test_long_poll_answers_near_the_cap(rig, delta: int, framing: str, piece: int) -> None:  # type: ignore[no-untyped-def]
    server, client = rig
    size = POLL_CAP + delta
    body = _commands_body(size)
    assert len(body) == size
    server.routes["/api/v1/commands"] = streamed(body, framing, piece)
    if size <= POLL_CAP:
        assert client.get_commands(10) == []
    else:
        with pytest.raises(TooLarge, match=r"\[commander\] max_poll_bytes"):
            client.get_commands(10)


@fuzz_settings(max_examples=60)
@given(delta=DELTAS, framing=FRAMINGS, piece=PIECES, status=st.sampled_from([200, 400, 500]))
def test_events_and_error_answers_near_the_cap(  # type: ignore[no-untyped-def]
    rig, delta: int, framing: str, piece: int, status: int
) -> None:
    server, client = rig
    size = max(0, RESPONSE_CAP + delta)
    body = json.dumps({"message": "m" * max(0, size - 16)}).encode()[:size].ljust(size, b" ")
    server.routes["/api/v1/events/stateful"] = streamed(body, framing, piece, status=status)
    if size <= RESPONSE_CAP:
        reply = client.post_events("stateful", b"{}")
        assert (reply.status, reply.body) == (status, body)
    else:
        with pytest.raises(TooLarge, match=r"\[agent\] max_response_bytes"):
            client.post_events("stateful", b"{}")


@fuzz_settings(max_examples=40)
@given(delta=DELTAS, framing=FRAMINGS, piece=PIECES)
def test_an_error_to_a_download_is_capped_like_every_error(
    rig, delta: int, framing: str, piece: int
) -> None:  # type: ignore[no-untyped-def]
    """A 503 to a file download may be as large as an error, not as large as a file."""
    server, client = rig
    size = max(0, RESPONSE_CAP + delta)
    server.routes["/api/v1/files"] = streamed(b"e" * size, framing, piece, status=503)
    if size <= RESPONSE_CAP:
        with pytest.raises(ServerUnreachable, match="HTTP 503"):
            client.get_file("g.yml")
    else:
        with pytest.raises(TooLarge, match=r"\[agent\] max_response_bytes"):
            client.get_file("g.yml")
