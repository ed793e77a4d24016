"""A call in flight can be ended from another thread (a stopping service's long-poll)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from comms.errors import ServerUnreachable
from comms.http import abort_calls, answer_cap, make_session, send
from tests.comms.helpers import tcp_server
from tests.fixtures.common import wait_for


@pytest.fixture
def silent_server():
    """A TCP server that accepts and reads but never answers (a held long-poll)."""
    accepted: list[socket.socket] = []
    with tcp_server("127.0.0.1", accepted.append) as port:
        yield f"http://127.0.0.1:{port}", accepted
        for conn in accepted:
            conn.close()


@pytest.mark.timeout(30)
def test_abort_ends_a_held_call_at_once(make_config, silent_server):
    url, accepted = silent_server
    session = make_session(make_config())
    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            send(
                session,
                "GET",
                f"{url}/api/v1/commands",
                timeout=(5, 60),
                cap=answer_cap(make_config()),
                what="commands",
            )
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    wait_for(lambda: accepted, timeout=10)  # the call is in flight, held by the server ...
    # ... and connected on the client's side too: the server may accept before the client
    # thread has its socket
    wait_for(
        lambda: any(getattr(c, "sock", None) for a in session.adapters.values()
                    for c in getattr(a, "in_use", ())),
        timeout=10,
    )  # fmt: skip
    assert not outcome
    started = time.monotonic()
    assert abort_calls(session) == 1
    thread.join(10)
    assert time.monotonic() - started < 5  # not the 60 s read timeout
    assert len(outcome) == 1 and isinstance(outcome[0], ServerUnreachable)


@pytest.mark.timeout(10)
def test_abort_with_nothing_in_flight_ends_nothing(make_config):
    assert abort_calls(make_session(make_config())) == 0
