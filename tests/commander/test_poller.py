"""commander.poller: the long-poll against the in-memory fake server, in milliseconds.

The real :class:`Poller` with a real commands.db in tmp_path; the fake answers each
``get_commands`` as the real client would (after its own token renewal): the commands of
a 200, ``[]`` for a 408, :class:`ServerUnreachable` for 429/5xx and timeouts,
:class:`BadResponse` for anything unusable, :class:`ServerRejected` for a final refusal.
Most tests step :meth:`Poller.poll_once` directly and check the delay it returns; the
end-to-end path (reference server, executors, forwarder) is in test_commander.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bus.results import NOT_VALID
from commander.command import ServerCommand
from commander.metrics import COMMANDER
from commander.poller import Poller
from commander.store import CommandStore
from comms.api import ServerClient
from comms.credentials import Credentials
from comms.errors import BadResponse
from comms.tokens import TokenManager
from core.metrics import Registry
from tests.comms.hostile import HostileServer, chunked_forever, fixed, gzip_bomb
from tests.fakes.server import (
    Answer,
    FakeServer,
    command,
    commands,
    fail,
    rejected,
    reply,
    timeout,
    unreachable,
)
from tests.fixtures.common import wait_for

INITIAL, MAXIMUM = 0.04, 0.16


@dataclass
class Rig:
    poller: Poller
    store: CommandStore
    counters: Registry
    stop: threading.Event
    delivered: list[ServerCommand] = field(default_factory=list)
    answered: list[bool] = field(default_factory=list)

    def count(self, name: str) -> Any:
        """A figure as status shows it (a labelled metric: ``{label value: n}``)."""
        return self.counters.snapshot().get(name)


@pytest.fixture
def rig(tmp_path: Path, fake_server: FakeServer) -> Iterator[Rig]:
    store = CommandStore(tmp_path / "commands.db")
    counters = Registry(COMMANDER)
    stop = threading.Event()
    delivered: list[ServerCommand] = []
    answered: list[bool] = []
    poller = Poller(
        fake_server,
        store,
        counters,
        stop,
        delivered.extend,
        request_timeout=660.0,
        command_timeout=600.0,
        backoff_initial=INITIAL,
        backoff_max=MAXIMUM,
        on_answered=lambda: answered.append(True),
    )
    yield Rig(poller, store, counters, stop, delivered, answered)
    stop.set()
    poller.join(2)
    store.close()


def ids(items: list[ServerCommand]) -> list[str]:
    return [c.document_id for c in items]


def test_a_200_stores_the_commands_then_delivers_them_and_polls_again_at_once(
    rig: Rig, fake_server: FakeServer
) -> None:
    fake_server.queue_commands(
        command("d1", "myapp.scan", {"paths": ["/tmp"]}, timeout=30),
        command("d2", "restart", timeout=None),
    )
    assert rig.poller.poll_once() == 0.0
    assert ids(rig.delivered) == ["d1", "d2"]
    first, second = rig.delivered
    assert (first.name, first.args, first.timeout) == ("myapp.scan", {"paths": ["/tmp"]}, 30.0)
    assert second.timeout == 600.0  # none given: the configured command_timeout
    # on disk before the fan-out heard of them
    assert [(s.command.document_id, s.state) for s in rig.store.in_flight()] == [
        ("d1", "received"),
        ("d2", "received"),
    ]
    [request] = fake_server.requests_to("commands")
    assert request.timeout == 660.0 and request.status == 200
    assert rig.count("polls") == 1 and rig.count("commands_received") == 2
    assert rig.count("poll_errors") == 0


def test_a_408_polls_again_at_once(rig: Rig, fake_server: FakeServer) -> None:
    fake_server.script("commands", reply(408, "Request Timeout"), reply(408))
    assert rig.poller.poll_once() == 0.0
    assert rig.poller.poll_once() == 0.0
    assert rig.count("polls") == 2 and rig.count("polls_408") == 2
    assert rig.count("poll_errors") == 0 and rig.delivered == []


def test_an_empty_200_is_a_poll_with_nothing_to_do(rig: Rig, fake_server: FakeServer) -> None:
    fake_server.script("commands", commands())
    assert rig.poller.poll_once() == 0.0
    assert rig.count("poll_errors") == 0 and rig.delivered == []


#: failed polls and the words of the error they leave in last_error
ERRORS: list[Any] = [
    pytest.param(reply(500, "Internal Server Error"), "Internal Server Error (HTTP 500)", id="500"),
    pytest.param(reply(503, "busy"), "busy (HTTP 503)", id="503"),
    pytest.param(reply(429, "Too Many Requests"), "(HTTP 429)", id="429"),
    pytest.param(timeout(), "did not answer in time", id="timeout"),
    pytest.param(unreachable(), "connection refused", id="unreachable"),
    pytest.param(reply(200, body=b"<html>"), "answer is not JSON", id="not-json"),
    pytest.param(
        reply(200, json={"commands": "none"}), "no list of commands", id="commands-not-list"
    ),
    pytest.param(
        reply(200, json={"commands": [1]}), "no list of commands", id="command-not-object"
    ),
    pytest.param(
        reply(400, "bad query"), "unexpected answer for commands: bad query (HTTP 400)", id="400"
    ),
    # left after the client's own token renewal: an error, backed off like the others
    pytest.param(reply(401, "Invalid token"), "Invalid token (HTTP 401)", id="401"),
    pytest.param(reply(403, "Couldn't connect to the indexer"), "(HTTP 403)", id="403"),
    pytest.param(
        fail(BadResponse("the token answer is not JSON")),
        "the token answer is not JSON",
        id="bad-token-answer",
    ),
    pytest.param(fail(RuntimeError("boom")), "RuntimeError: boom", id="unexpected-exception"),
]


@pytest.mark.parametrize(("answer", "words"), ERRORS)
def test_a_failed_poll_backs_off_and_counts_the_error(
    rig: Rig, fake_server: FakeServer, answer: Answer, words: str
) -> None:
    fake_server.script("commands", answer)
    delay = rig.poller.poll_once()
    assert INITIAL / 2 <= delay <= INITIAL  # equal jitter: at least half the ceiling
    assert rig.count("poll_errors") == 1
    assert words in rig.count("last_error")
    assert rig.poller.fatal is None and not rig.stop.is_set()


def test_failures_double_the_ceiling_up_to_the_maximum_and_a_success_resets_it(
    rig: Rig, fake_server: FakeServer
) -> None:
    fake_server.script("commands", *(reply(502) for _ in range(5)))
    ceilings = [INITIAL, 2 * INITIAL, 4 * INITIAL, MAXIMUM, MAXIMUM]
    for ceiling in ceilings:
        assert ceiling / 2 <= rig.poller.poll_once() <= ceiling
    fake_server.script("commands", reply(408), unreachable())
    assert rig.poller.poll_once() == 0.0
    assert INITIAL / 2 <= rig.poller.poll_once() <= INITIAL  # counting starts again
    assert rig.count("poll_errors") == 6 and rig.count("polls") == 7


def test_a_final_refusal_stops_the_poller_with_the_servers_words(
    rig: Rig, fake_server: FakeServer
) -> None:
    fake_server.script("commands", rejected(403, "Agent does not exist"))
    assert rig.poller.poll_once() == 0.0
    assert rig.stop.is_set()
    assert rig.poller.fatal is not None and "Agent does not exist" in str(rig.poller.fatal)
    assert "Agent does not exist" in rig.count("last_error")
    assert rig.count("poll_errors") == 0  # not an error to retry: the end


def test_a_command_delivered_again_is_skipped(rig: Rig, fake_server: FakeServer) -> None:
    fake_server.queue_commands(command("d1"))
    fake_server.queue_commands(command("d1"), command("d2"))
    rig.poller.poll_once()
    rig.poller.poll_once()
    assert ids(rig.delivered) == ["d1", "d2"]
    assert rig.count("duplicates_skipped") == 1 and rig.count("commands_received") == 3


def test_an_invalid_command_is_answered_1_without_running_and_unanswerable_ones_dropped(
    rig: Rig, fake_server: FakeServer
) -> None:
    fake_server.queue_commands(
        command("bad", args=[1]),  # type: ignore[arg-type]
        {"action": {"name": "x"}},  # no document_id: nothing to answer
        command("good"),
    )
    assert rig.poller.poll_once() == 0.0
    assert ids(rig.delivered) == ["good"]
    [outbox] = rig.store.outbox()
    assert (outbox.document_id, outbox.code, outbox.message) == ("bad", 1, NOT_VALID)
    assert rig.answered == [True]  # the reporter is woken for it
    assert rig.count("bad_commands") == {"bad_args": 1, "missing_document_id": 1}
    assert rig.count("executed") == {"1": 1}
    # the same invalid command again is a duplicate, not a second answer
    fake_server.queue_commands(command("bad", args=[1]))  # type: ignore[arg-type]
    rig.poller.poll_once()
    assert len(rig.store.outbox()) == 1 and rig.count("duplicates_skipped") == 1


def test_the_running_loop_polls_again_at_once_after_408_and_waits_after_errors(
    rig: Rig, fake_server: FakeServer
) -> None:
    fake_server.hold = 0.002  # a quiet server's long-poll ends with 408
    fake_server.script("commands", reply(500), reply(500))
    rig.poller.start()
    requests = fake_server.wait_requests("commands", 8)
    first, second, third = requests[:3]
    assert [r.status for r in requests[:3]] == [500, 500, 408]
    assert second.at - first.at >= INITIAL / 2  # backed off
    assert third.at - second.at >= INITIAL  # the ceiling doubled
    gaps = [b.at - a.at for a, b in zip(requests[2:], requests[3:], strict=False)]
    assert sorted(gaps)[len(gaps) // 2] < INITIAL / 2, gaps  # after a 408: at once
    fake_server.queue_commands(command("d1"))
    wait_for(lambda: ids(rig.delivered) == ["d1"], timeout=5)
    rig.stop.set()
    rig.poller.join(2)
    assert rig.count("poll_errors") == 2 and rig.count("polls_408") >= 6


@pytest.mark.timeout(30)
def test_a_long_poll_answer_over_its_cap_is_a_server_error_the_poller_retries(
    tmp_path: Path, make_config: Any
) -> None:
    """Over real HTTP: a hostile server sends an endless answer, then a gzip bomb, then
    behaves. Both attacks are polls that failed (backed off, counted, in status); nothing
    of them is stored; the next good answer is delivered."""
    server = HostileServer()
    config = make_config(
        {"agent": {"server_url": server.url}, "commander": {"max_poll_bytes": "256KB"}}
    )
    creds = Credentials(
        uuid="0190a6d2-0000-4000-8000-0000000000dd", key="k" * 32, name="h", server_url=server.url
    )
    client = ServerClient(config, TokenManager(config, creds, boot_id="b"))
    store = CommandStore(tmp_path / "commands.db")
    counters = Registry(COMMANDER)
    stop = threading.Event()
    delivered: list[ServerCommand] = []
    poller = Poller(
        client,
        store,
        counters,
        stop,
        delivered.extend,
        request_timeout=10.0,
        command_timeout=600.0,
        backoff_initial=INITIAL,
        backoff_max=MAXIMUM,
    )
    try:
        server.routes["/api/v1/commands"] = chunked_forever()
        assert INITIAL / 2 <= poller.poll_once() <= INITIAL
        snap = counters.snapshot()
        assert snap["poll_errors"] == 1
        assert "larger than 262144 bytes" in snap["last_error"]
        assert "[commander] max_poll_bytes" in snap["last_error"]

        server.routes["/api/v1/commands"] = fixed(
            gzip_bomb(64 * 1024**2), {"Content-Encoding": "gzip"}
        )
        assert poller.poll_once() > 0
        assert "compressed (gzip)" in counters.snapshot()["last_error"]
        assert counters.snapshot()["poll_errors"] == 2 and not delivered

        good = json.dumps({"commands": [command("doc-1")]}).encode()
        server.routes["/api/v1/commands"] = fixed(good)
        assert poller.poll_once() == 0.0
        assert ids(delivered) == ["doc-1"]
    finally:
        server.close()
        store.close()
