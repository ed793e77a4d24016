"""forwarder.sender: what the sender does with every server answer, in milliseconds.

A real :class:`Sender` (real store, batcher and quarantine files in tmp_path, the real
back-off without jitter) posts to the in-memory :class:`~tests.fakes.server.FakeServer`,
which answers each request as scripted and parses every body back into events. The
delivery guarantees over real sockets and a real server (outage, token expiry, crash,
kill -9, the per-chunk parser) are in test_answers.py, test_delivery.py, test_crash.py and
test_stateful.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bus.errors import AgentbusError
from comms.errors import BadResponse, NotEnrolled, ServerRejected
from forwarder.store import Store
from tests.fakes.server import (
    Answer,
    FakeServer,
    Request,
    fail,
    rejected,
    reply,
    timeout,
    unreachable,
    with_data,
    with_id,
)
from tests.fixtures.common import wait_for
from tests.forwarder.helpers import (
    AGENT_LINE,
    RecordingBackoff,
    SenderRig,
    command_result,
    fim,
    package,
    seqs,
    stateless,
)


@pytest.fixture
def rigs(tmp_path: Path, fake_server: FakeServer) -> Iterator[Any]:
    """``rig(kind, **options)``: a :class:`SenderRig` on the fake server (one per test)."""
    made: list[SenderRig] = []

    def make(kind: str = "stateless", **options: Any) -> SenderRig:
        rig = SenderRig(tmp_path / f"rig{len(made)}", fake_server, kind, **options)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.close()


def put_many(rig: SenderRig, events: list[dict[str, Any]], per_chunk: int) -> None:
    for start in range(0, len(events), per_chunk):
        rig.put(*events[start : start + per_chunk])


# -- 2xx ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status"), [("stateless", 204), ("stateless", 200), ("stateful", 200)]
)
def test_a_2xx_delivers_the_batch_and_acks_its_chunks(
    rigs: Any, fake_server: FakeServer, kind: str, status: int
) -> None:
    rig = rigs(kind)
    events = (
        [stateless(i) for i in range(30)]
        if kind == "stateless"
        else [fim(i, "create") for i in range(30)]
    )
    put_many(rig, events, 10)
    fake_server.script(kind, reply(status))
    batch = rig.step()
    assert len(batch.chunks) == 3  # one request for the three chunks
    [request] = fake_server.requests_to(kind)
    assert request.agent == orjson.loads(AGENT_LINE)
    assert seqs(request.events) == list(range(30))
    assert request.body == batch.body(AGENT_LINE)
    assert (rig.store.events, rig.store.rows) == (0, 0)
    figures = rig.figures()
    assert figures["sent"] == figures["acked"] == 30
    assert figures["requests"] == {str(status): 1}
    assert figures["retried"] == 0 and figures["backoff"] == 0 and figures["last_error"] is None
    assert rig.quarantine.count() == 0


def test_the_acks_are_committed_a_reopened_queue_is_empty(
    tmp_path: Path, rigs: Any, fake_server: FakeServer
) -> None:
    rig = rigs()
    rig.put(*(stateless(i) for i in range(5)))
    rig.step()
    rig.store.close()
    again = Store(tmp_path / "rig0" / "queue", "stateless", max_bytes=10**9)
    assert (again.rows, again.events) == (0, 0)
    again.close()


# -- 400: bisect, quarantine the offenders, deliver the rest --------------------------------


@pytest.mark.parametrize("bad", [[1234], [0, 2999], [700, 701]])
def test_a_400_is_bisected_down_to_the_bad_events_which_are_quarantined_with_the_message(
    rigs: Any, fake_server: FakeServer, bad: list[int]
) -> None:
    rig = rigs("stateless")
    put_many(rig, [stateless(i) for i in range(3000)], 1000)
    message = "data.msg input should be a valid string (line 3)"
    fake_server.refuse(lambda e: e["data"]["seq"] in bad, status=400, message=message)
    rig.drain()
    assert seqs(fake_server.delivered("stateless")) == [i for i in range(3000) if i not in bad]
    entries = rig.quarantine.entries()
    assert [orjson.loads(e["event"].split("\n")[1])["seq"] for e in entries] == bad
    assert all(e["status"] == 400 and e["message"] == message for e in entries)
    assert all(e["kind"] == "stateless" for e in entries)
    figures = rig.figures()
    assert figures["quarantined"] == len(bad)
    assert figures["splits"] >= 2 and figures["requests"]["400"] >= 2
    assert figures["acked"] == 3000 - len(bad)
    assert figures["retried"] == 0  # a 400 is an answer, not a failure to retry
    assert rig.store.events == 0


def test_a_stateful_400_keeps_the_order_of_what_is_delivered(
    rigs: Any, fake_server: FakeServer
) -> None:
    rig = rigs("stateful")
    events = [fim(i, "create") for i in range(300)]
    events.insert(123, fim(999, "create", doc="poison"))
    put_many(rig, events, 100)
    fake_server.refuse(with_id("poison"), message="data.file.size must be smaller (line 3)")
    rig.drain()
    delivered = fake_server.delivered("stateful")
    assert seqs(delivered) == list(range(300))  # all, in order
    [entry] = rig.quarantine.entries()
    assert entry["status"] == 400 and '"id":"poison"' in entry["event"]
    assert entry["message"] == "data.file.size must be smaller (line 3)"


# -- 413: split, a lone oversized event is quarantined --------------------------------------


def test_a_413_splits_the_batch_and_a_lone_oversized_event_is_quarantined(
    rigs: Any, fake_server: FakeServer
) -> None:
    rig = rigs("stateless")
    events = [stateless(i) for i in range(2000)]
    events.insert(1000, stateless(99999, pad=30_000))  # alone it is still over 20 KB
    put_many(rig, events, 500)
    fake_server.max_body = 20_000
    rig.drain()
    assert seqs(fake_server.delivered("stateless")) == list(range(2000))
    assert all(len(r.body) <= 20_000 for r in fake_server.requests_to("stateless") if r.ok)
    [entry] = rig.quarantine.entries()
    assert entry["status"] == 413 and entry["message"] == "Request Entity Too Large"
    assert '"seq":99999' in entry["event"]
    figures = rig.figures()
    assert figures["splits"] >= 1 and figures["requests"]["413"] >= 1
    assert figures["quarantined"] == 1 and rig.store.events == 0


def test_a_stateful_413_is_split_in_order(rigs: Any, fake_server: FakeServer) -> None:
    rig = rigs("stateful")
    events = [fim(i, "create") for i in range(200)]
    put_many(rig, events, 50)
    fake_server.max_body = 3000
    rig.drain()
    assert [e["id"] for e in fake_server.delivered("stateful")] == [e["id"] for e in events]
    assert rig.quarantine.count() == 0 and rig.figures()["splits"] >= 1


# -- answers that keep the batch: back off and send it again -----------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 418])
def test_a_retryable_status_keeps_the_batch_and_honours_retry_after_as_a_floor(
    rigs: Any, fake_server: FakeServer, status: int
) -> None:
    rig = rigs("stateless")
    rig.put(*(stateless(i) for i in range(10)))
    fake_server.script(
        "stateless",
        reply(status, "busy", retry_after=0.03),
        reply(status, "still busy", retry_after=0.02),
    )
    rig.step()
    requests = fake_server.requests_to("stateless")
    assert [r.status for r in requests] == [status, status, 204]
    assert requests[0].body == requests[1].body == requests[2].body  # the same batch
    # the jitter drew 0: the delays are the server's Retry-After, never shorter
    assert rig.backoff.failures == [(0.03, 0.03), (0.02, 0.02)]
    assert requests[1].at - requests[0].at >= 0.03
    assert requests[2].at - requests[1].at >= 0.02
    figures = rig.figures()
    assert figures["requests"] == {str(status): 2, "204": 1}
    assert figures["retried"] == 2 and figures["sent"] == 30 and figures["acked"] == 10
    assert f"HTTP {status} from the server: still busy" in figures["last_error"]
    assert rig.backoff.attempts == 0  # the success reopened the gates
    assert seqs(fake_server.delivered("stateless")) == list(range(10))


def test_retry_failures_double_the_delay_up_to_the_maximum(
    rigs: Any, fake_server: FakeServer
) -> None:
    # the top of every ceiling
    rig = rigs("stateless", backoff=RecordingBackoff(0.001, 0.004, rng=lambda: 0.999999))
    rig.put(stateless(1))
    fake_server.script("stateless", *(reply(503) for _ in range(5)))
    rig.step()
    delays = [round(d, 4) for _ra, d in rig.backoff.failures]
    assert delays == [0.001, 0.002, 0.004, 0.004, 0.004]


@pytest.mark.parametrize("status", [401, 403])
def test_a_401_or_403_left_after_the_clients_renewal_backs_off_and_sends_again(
    rigs: Any, fake_server: FakeServer, status: int
) -> None:
    # The client renews the token and resends once by itself (comms.api); what the
    # sender sees is the status of that second try.
    rig = rigs("stateful")
    rig.put(fim(1, "create"))
    fake_server.script("stateful", reply(status, "Invalid token"))
    rig.step()
    assert fake_server.statuses("stateful") == [status, 200]
    figures = rig.figures()
    assert figures["retried"] == 1 and figures["requests"] == {str(status): 1, "200": 1}
    assert rig.sender.fatal is None
    assert fake_server.documents == {("wazuh-states-fim", "doc-1"): fim(1)["data"]}


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (timeout(), "server unreachable: https://fake-server:27000 did not answer in time"),
        (unreachable(), "server unreachable: cannot reach https://fake-server:27000"),
        (fail(BadResponse("the token answer is not JSON")), "the token answer is not JSON"),
        (fail(NotEnrolled("not enrolled: run agentbus register")), "run agentbus register"),
        (fail(RuntimeError("boom")), "RuntimeError: boom"),
    ],
)
def test_no_answer_keeps_the_batch_and_it_is_sent_again(
    rigs: Any, fake_server: FakeServer, answer: Answer, words: str
) -> None:
    rig = rigs("stateless")
    rig.put(*(stateless(i) for i in range(3)))
    fake_server.script("stateless", answer, answer)
    rig.step()
    assert fake_server.statuses("stateless") == [None, None, 204]
    figures = rig.figures()
    assert figures["requests"] == {"error": 2, "204": 1}
    assert figures["retried"] == 2 and figures["acked"] == 3
    assert words in figures["last_error"]
    assert rig.sender.fatal is None


def test_an_unreachable_servers_retry_hint_is_a_floor_too(
    rigs: Any, fake_server: FakeServer
) -> None:
    rig = rigs("stateless")
    rig.put(stateless(1))
    fake_server.script("stateless", unreachable("auth busy", retry_after=0.02))
    rig.step()
    assert rig.backoff.failures == [(0.02, 0.02)]
    first, second = fake_server.requests_to("stateless")
    assert second.at - first.at >= 0.02


def test_a_final_refusal_of_the_credentials_is_fatal_and_the_events_stay_queued(
    rigs: Any, fake_server: FakeServer
) -> None:
    rig = rigs("stateless")
    rig.put(*(stateless(i) for i in range(5)))
    fake_server.always("stateless", rejected(401, "Invalid key"))
    rig.start()
    wait_for(lambda: rig.sender.fatal is not None)
    rig.stop()
    fatal = rig.sender.fatal
    assert isinstance(fatal, ServerRejected) and isinstance(fatal, AgentbusError)
    assert fatal.status == 401 and "Invalid key" in str(fatal)
    assert rig.figures()["acked"] == 0 and rig.figures()["requests"]["error"] >= 1
    assert rig.store.events == 5  # nothing lost: the service stops, the events wait on disk
    assert fake_server.delivered("stateless") == []


def test_a_batch_dropped_by_drop_oldest_while_backing_off_is_not_sent_again(
    rigs: Any, fake_server: FakeServer
) -> None:
    # room for one chunk only (an empty queue takes any chunk)
    rig = rigs("stateless", max_queue_bytes=1, drop_oldest=True)
    rig.put(stateless(0))

    def fail_and_fill(request: Request) -> Answer:
        # while the batch of event 0 is out, a new event needs its room: drop_oldest
        # deletes the only chunk, the one in flight
        rig.put(stateless(1))
        return reply(503)

    fake_server.script("stateless", fail_and_fill)
    rig.step()  # the retry finds its chunk dropped and gives it up
    assert rig.store.dropped_events == 1
    rig.drain()
    assert fake_server.statuses("stateless") == [503, 204]
    assert seqs(fake_server.delivered("stateless")) == [1]
    assert rig.store.events == 0


# -- stateful items: the indexer's semantics ---------------------------------------------


def test_resent_creates_and_deletes_count_as_delivered(rigs: Any, fake_server: FakeServer) -> None:
    rig = rigs("stateful")
    rig.put(package(1, doc="a"), package(2, doc="b"), package(2, "delete", doc="b"))
    rig.step()
    rig.put(package(1, doc="a"), package(2, "delete", doc="b"))  # sent again (crash, retry)
    rig.step()
    assert fake_server.requests_to("stateful")[-1].items == [409, 404]
    figures = rig.figures()
    assert figures["items_already_created"] == 1 and figures["items_already_deleted"] == 1
    assert figures["item_failures"] == 0 and rig.quarantine.count() == 0
    assert list(fake_server.documents) == [("wazuh-states-inventory-packages", "a")]


def test_an_update_of_a_missing_document_is_sent_again_as_a_create_before_the_next_batch(
    rigs: Any, fake_server: FakeServer
) -> None:
    rig = rigs("stateful", batch_max_events=2)  # one chunk per batch
    rig.put(package(7, "update", doc="lost"), package(1, doc="other"))
    rig.put(package(2, doc="next"))
    rig.step()
    assert [r.operations() for r in fake_server.requests_to("stateful")] == [
        [("update", "lost"), ("create", "other")],
        [("create", "lost")],  # right after its batch, with the same data
    ]
    rig.step()
    assert fake_server.requests_to("stateful")[-1].operations() == [("create", "next")]
    key = ("wazuh-states-inventory-packages", "lost")
    assert fake_server.documents[key] == package(7)["data"]
    assert rig.figures()["items_recreated"] == 1 and rig.quarantine.count() == 0


def test_no_create_when_a_later_event_settles_the_document(
    rigs: Any, fake_server: FakeServer
) -> None:
    rig = rigs("stateful", batch_max_events=7)  # one chunk per batch
    # in the same batch: a later create, a later delete; an update twice: the last one wins
    rig.put(
        package(1, "update", doc="x"),
        package(1, doc="x"),
        package(2, "update", doc="y"),
        package(2, "delete", doc="y"),
        package(3, "update", doc="z"),
        package(4, "update", doc="z"),
        package(5, "update", doc="w"),
    )
    # still in the queue, in a later batch: a delete of w
    rig.put(package(5, "delete", doc="w"), package(6, doc="v"))
    batch = rig.step()
    assert len(batch.chunks) == 1  # the delete of w waited in the queue
    creates = [
        d for r in fake_server.requests_to("stateful") for op, d in r.operations() if op == "create"
    ]
    assert creates == ["x", "z"]
    key = ("wazuh-states-inventory-packages", "z")
    assert fake_server.documents[key] == package(4)["data"]
    figures = rig.figures()
    assert figures["items_recreated"] == 1
    assert figures["items_recreate_moot"] == 4  # x, y, z's first update, w
    assert rig.quarantine.count() == 0


def test_a_command_result_for_a_missing_command_is_quarantined_never_created(
    rigs: Any, fake_server: FakeServer
) -> None:
    rig = rigs("stateful")
    fake_server.known_commands.add("known")
    rig.put(command_result("known"), command_result("unknown"))
    rig.step()
    assert [op for r in fake_server.requests_to("stateful") for op, _d in r.operations()] == [
        "update",
        "update",
    ]
    [entry] = rig.quarantine.entries()
    assert entry["status"] == 404 and '"id":"unknown"' in entry["event"]
    assert "no command 'unknown'" in entry["message"]
    assert rig.figures()["item_failures"] == 1


def test_a_404_to_a_command_delete_is_a_failure_not_delivered_state(
    rigs: Any, fake_server: FakeServer
) -> None:
    rig = rigs("stateful", batch_max_events=1)
    fake_server.fail_items(with_id("c1"), status=404, result="not_found")
    rig.put({"module": "command", "type": "stateful", "id": "c1", "operation": "delete"})
    rig.step()
    [entry] = rig.quarantine.entries()
    assert entry["status"] == 404 and "no command 'c1'" in entry["message"]
    assert rig.figures()["items_already_deleted"] == 0


def test_any_other_item_failure_is_quarantined_with_the_items_result(
    rigs: Any, fake_server: FakeServer
) -> None:
    rig = rigs("stateful")
    fake_server.fail_items(with_id("bad"), status=400, result="strict_dynamic_mapping_exception")
    fake_server.fail_items(
        with_data(file={"path": "/etc/f2", "size": 2}),
        status=429,
        result="es_rejected_execution_exception",
    )
    rig.put(fim(1, "create"), fim(9, "create", doc="bad"), fim(2, "create"), fim(3, "create"))
    rig.step()
    entries = rig.quarantine.entries()
    assert [(e["status"], e["message"]) for e in entries] == [
        (400, "item refused: strict_dynamic_mapping_exception"),
        (429, "item refused: es_rejected_execution_exception"),
    ]
    assert '"id":"bad"' in entries[0]["event"] and '"id":"doc-2"' in entries[1]["event"]
    assert seqs(fake_server.delivered("stateful")) == [1, 3]
    figures = rig.figures()
    assert figures["item_failures"] == 2 and figures["quarantined"] == 2
    assert figures["acked"] == 4 and rig.store.events == 0


def test_a_stateful_200_without_usable_items_is_delivered_and_logged(
    rigs: Any, fake_server: FakeServer
) -> None:
    rig = rigs("stateful")
    rig.put(fim(1, "create"))
    fake_server.script("stateful", reply(200, body=b"<html>ok</html>"))
    rig.step()
    figures = rig.figures()
    assert figures["acked"] == 1 and rig.store.events == 0 and rig.quarantine.count() == 0
    assert "without usable per-item results" in figures["last_error"]


def test_requests_stay_within_the_bound_and_an_oversized_document_goes_alone(
    rigs: Any, fake_server: FakeServer
) -> None:
    rig = rigs("stateful", batch_max_bytes=2000, max_body=2000)
    events = [package(i, doc=f"p{i:03}") for i in range(100)]
    huge = package(500, doc="huge")
    huge["data"]["package"]["description"] = "d" * 5000
    events.insert(50, huge)
    rig.put(*events)  # one chunk far bigger than a request
    rig.drain()
    requests = fake_server.requests_to("stateful")
    assert [d for r in requests for d in r.ids()] == [e["id"] for e in events]
    [alone] = [r for r in requests if "huge" in r.ids()]
    assert alone.ids() == ["huge"]
    assert all(len(r.body) <= 2000 for r in requests if r is not alone)
    assert len(fake_server.documents) == 101
    assert rig.figures()["stateful_oversized"] == 1
