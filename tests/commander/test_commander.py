"""The commander end to end: reference server → long-poll → executors → forwarder → server.

Real parts throughout: the reference server in a subprocess, the real forwarder, the real
comms client, executors built on the SDK, ZeroMQ over ipc sockets.
"""

from __future__ import annotations

import threading
import time

import msgpack
import pytest
import zmq

from bus import Executor
from bus.executor import Command
from bus.sockets import connect, make_socket
from commander.command import ServerCommand
from commander.fanout import ExecutorTable, Fanout
from commander.service import Commander
from core.service import endpoints_from_config
from tests.fixtures.commander import QueueServer, commander_thread, status
from tests.fixtures.common import wait_for

FAST = {
    "commander": {"republish_interval": "200ms", "hello_grace": "500ms"},
    "forwarder": {"batch_interval": "50ms"},
}


@pytest.fixture
def agent(enroll_agent, run_forwarder):
    """An enrolled agent with its forwarder running; returns (config, server)."""
    config, _creds, server = enroll_agent(sections=FAST)
    run_forwarder(config)
    return config, server


@pytest.fixture
def executors(agent):
    config, _ = agent
    eps = endpoints_from_config(config)
    started: list[Executor] = []

    def start(topics, **kw) -> Executor:
        ex = Executor(topics, commands_endpoint=eps.commands, results_endpoint=eps.results, **kw)
        ex.start()
        started.append(ex)
        return ex

    yield start
    for ex in started:
        ex.stop()


def results_of(server, doc):
    return [(r["code"], r["message"]) for r in server.command_results(doc)]


def wait_results(server, doc, n=1, timeout=15):
    wait_for(lambda: len(server.command_results(doc)) >= n, timeout)
    return results_of(server, doc)


def test_a_command_reaches_its_executor_and_the_result_reaches_the_server(agent, executors):
    config, server = agent
    got: list[Command] = []

    def scan(cmd: Command):
        got.append(cmd)
        return 0, f"scanned {', '.join(cmd.args['paths'])}"

    executors(["myapp"], name="myapp-exec", handlers={"scan": scan})
    with commander_thread(config, None):
        doc = server.queue_command(
            server.agents()[0]["id"], name="myapp.scan", args={"paths": ["/tmp"]}, timeout=60
        )
        assert wait_results(server, doc) == [(0, "scanned /tmp")]
        assert got[0].id == doc and got[0].name == "myapp.scan" and 0 < got[0].timeout <= 60
        st = status(config)
        assert st["commands_received"] == 1
        assert st["commands_published"] == 1
        assert st["executed"] == {"0": 1}
        assert st["live_executors"] == 1 and st["executors"] == {"myapp-exec": ["myapp"]}
        assert st["polls"] >= 1
        wait_for(
            lambda: status(config)["stored"].get("done", 0) == 0 and status(config)["outbox"] == 0
        )
    assert [c["status"] for c in server.commands()] == ["done"]


def test_no_live_executor_gives_result_1(agent):
    config, server = agent
    with commander_thread(config, None):
        doc = server.queue_command(server.agents()[0]["id"], name="nobody.work")
        assert wait_results(server, doc) == [(1, "no executor for module nobody")]
        assert status(config)["verdicts"]["no_executor"] == 1


def test_an_executor_that_never_answers_gives_result_3(agent, executors):
    config, server = agent
    release = threading.Event()
    executors(["slow"], handlers={"work": lambda c: release.wait(30) and "late"})
    # A "ghost" says hello but never subscribes: its commands are republished, never acked.
    ghost = make_socket(zmq.Context.instance(), zmq.PUSH)
    connect(ghost, endpoint_results(config))
    try:
        with commander_thread(config, None):
            agent_id = server.agents()[0]["id"]
            ghost.send(msgpack.packb({"hello": ["ghost"], "executor": "ghost"}))
            wait_for(lambda: status(config)["live_executors"] == 2)
            acked = server.queue_command(agent_id, name="slow.work", timeout=2)
            unacked = server.queue_command(agent_id, name="ghost.work", timeout=2)
            assert wait_results(server, acked) == [
                (3, "no result from the executor of module slow within 2s")
            ]
            assert wait_results(server, unacked) == [
                (3, "no executor of module ghost took the command within 2s")
            ]
            st = status(config)
            assert st["timed_out"] == 2
            assert st["publications"] >= 4  # the ghost's command was published again and again
            release.set()
            # The late result is ignored, not reported a second time.
            wait_for(lambda: status(config)["unknown"].get("results") == 1)
            assert results_of(server, acked) == [
                (3, "no result from the executor of module slow within 2s")
            ]
    finally:
        ghost.close(linger=0)


def endpoint_results(config):
    return endpoints_from_config(config).results


def test_a_command_delivered_twice_runs_once(agent, executors):
    config, server = agent
    calls: list[str] = []
    executors(["myapp"], handlers={"once": lambda c: calls.append(c.id) or "ran"})
    with commander_thread(config, None):
        doc = server.queue_command(server.agents()[0]["id"], name="myapp.once")
        assert wait_results(server, doc) == [(0, "ran")]
        wait_for(lambda: status(config)["outbox"] == 0)
        server.resend(doc)
        wait_for(lambda: status(config).get("duplicates_skipped") == 1)
        # The same delivery again, and a new command after it, to be sure the loop went on.
        second = server.queue_command(server.agents()[0]["id"], name="myapp.once")
        assert wait_results(server, second) == [(0, "ran")]
    assert calls == [doc, second]
    assert results_of(server, doc) == [(0, "ran")]


def test_bad_input_on_the_results_socket_is_counted_and_harmless(agent, executors):
    config, server = agent
    executors(["myapp"], handlers={"ok": lambda c: "fine"})
    sock = make_socket(zmq.Context.instance(), zmq.PUSH)
    connect(sock, endpoint_results(config))
    try:
        with commander_thread(config, None):
            for junk in (b"\xc1", msgpack.packb([1]), msgpack.packb({"id": "x", "code": 99})):
                sock.send(junk)
            wait_for(lambda: status(config)["bad_input"].get("bad_value") == 1)
            st = status(config)
            assert st["bad_input"]["not_msgpack"] == 1 and st["bad_input"]["not_map"] == 1
            doc = server.queue_command(server.agents()[0]["id"], name="myapp.ok")
            assert wait_results(server, doc) == [(0, "fine")]
    finally:
        sock.close(linger=0)


def test_an_invalid_command_is_answered_without_running(agent):
    config, server = agent
    with commander_thread(config, None) as commander:
        # The reference server only queues well-formed commands; feed the poller directly.
        commander._poller.accept([{"document_id": "bad-1", "action": {"name": "x", "args": [1]}}])
        wait_for(lambda: status(config).get("results_reported") == 1)
        assert status(config)["bad_commands"]["bad_args"] == 1


def test_server_errors_back_off_and_polling_resumes(agent, executors):
    config, server = agent
    executors(["myapp"], handlers={"ok": lambda c: "fine"})
    server.set_fault(status=500, count=2, path="/api/v1/commands")
    with commander_thread(config, None):
        wait_for(lambda: status(config).get("poll_errors", 0) >= 2)
        assert "500" in status(config)["last_error"]
        doc = server.queue_command(server.agents()[0]["id"], name="myapp.ok")
        assert wait_results(server, doc, timeout=20) == [(0, "fine")]


def test_revoked_token_is_renewed_and_408_polls_again_at_once(agent, executors):
    config, server = agent
    executors(["myapp"], handlers={"ok": lambda c: "fine"})
    with commander_thread(config, None):
        # The fixture's server holds a poll 2 s, then answers 408: the next poll follows.
        wait_for(lambda: status(config).get("polls_408", 0) >= 1, 10)
        assert status(config).get("poll_errors", 0) == 0
        server.revoke_tokens()
        # The poll held at the moment keeps its answer; the next one is refused with 403,
        # the client renews the token and polls again without counting an error.
        wait_for(lambda: server.request_count(path="/api/v1/commands", status=403) >= 1, 10)
        doc = server.queue_command(server.agents()[0]["id"], name="myapp.ok")
        assert wait_results(server, doc) == [(0, "fine")]
        assert status(config).get("poll_errors", 0) == 0


def test_a_late_subscriber_gets_the_command_at_once_not_at_the_next_republish(
    enroll_agent, run_forwarder
):
    """Slow joiner: the command was published while nobody subscribed (lost, as PUB/SUB
    does); with republishing every 60 s, only the XPUB subscription notice can explain the
    subscriber getting it within seconds."""
    config, _creds, server = enroll_agent(
        sections={
            "commander": {"republish_interval": "60s", "hello_grace": "20s"},
            "forwarder": {"batch_interval": "50ms"},
        }
    )
    run_forwarder(config)
    eps = endpoints_from_config(config)
    ctx = zmq.Context.instance()
    push = make_socket(ctx, zmq.PUSH)
    sub = make_socket(ctx, zmq.SUB)
    try:
        with commander_thread(config, None):
            connect(push, eps.results)
            push.send(msgpack.packb({"hello": ["late"], "executor": "raw"}))
            wait_for(lambda: status(config)["live_executors"] == 1)
            doc = server.queue_command(server.agents()[0]["id"], name="late.work", timeout=50)
            wait_for(lambda: status(config).get("publications") == 1)  # into the void
            sub.setsockopt(zmq.SUBSCRIBE, b"late")
            connect(sub, eps.commands)
            assert sub.poll(10_000), "the command was not published again on subscription"
            topic, body = sub.recv_multipart()
            assert topic == b"late" and msgpack.unpackb(body)["id"] == doc
            push.send(msgpack.packb({"ack": doc}))
            push.send(msgpack.packb({"id": doc, "code": 0, "message": "caught up"}))
            assert wait_results(server, doc) == [(0, "caught up")]
    finally:
        push.close(linger=0)
        sub.close(linger=0)


@pytest.mark.timeout(30)
def test_an_idle_commander_polls_without_a_timeout_and_a_stop_wakes_it_at_once(
    make_config, monkeypatch
):
    """Nothing in flight: the main loop sleeps in poll() with no timeout (no tick to see a
    stop flag), and a stop request from another thread wakes that poll."""
    timeouts: list[int | None] = []

    class RecordingPoller(zmq.Poller):
        def poll(self, timeout=None):
            timeouts.append(timeout)
            return super().poll(timeout)

    monkeypatch.setattr(zmq, "Poller", RecordingPoller)
    config = make_config()
    service = Commander(config, client=QueueServer())
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(service.run()), daemon=True)
    thread.start()
    wait_for(lambda: timeouts, 10)
    assert set(timeouts) == {None}
    service.request_stop()
    thread.join(5)
    assert not thread.is_alive(), "a stop request did not wake the idle commander"
    assert codes == [0]


def test_the_fanout_sleeps_until_its_next_deadline_and_without_one_when_empty():
    clock = [100.0]
    fanout = Fanout(
        None,  # nothing is published in this test
        ExecutorTable(30.0),
        republish_interval=5.0,
        hello_grace=0.0,
        clock=lambda: clock[0],
        wall=lambda: 1000.0,
    )
    assert fanout.next_wakeup() is None
    flight = fanout.add(
        ServerCommand(document_id="d1", name="myapp.x", timeout=60.0, received_at=1000.0)
    )
    flight.next_publish = 103.0
    assert fanout.next_wakeup() == pytest.approx(3.0)
    flight.acked = True  # only its deadline is left
    assert fanout.next_wakeup() == pytest.approx(60.0)


@pytest.mark.timeout(60)
def test_a_stopping_commander_ends_its_held_long_poll_and_leaves_commands_to_the_next(
    enrolled_agent,
):
    """As threads of one process, a poller left in its long-poll would outlive its
    service and take commands the next commander never sees."""
    config, _credentials, server = enrolled_agent
    server.set_command_hold(60.0)
    first = Commander(config)
    thread = threading.Thread(target=first.run, daemon=True)
    thread.start()
    wait_for(lambda: first.metrics.snapshot().get("polls", 0) >= 1, 10)  # held by the server
    stopping = time.monotonic()
    first.request_stop()
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - stopping < 5  # not the 60 s hold
    assert first._poller is not None and not first._poller._thread.is_alive()

    doc = server.queue_command(server.agents()[0]["id"], name="set-group", args={"groups": []})
    second = Commander(config)
    thread = threading.Thread(target=second.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: second.store is not None and second.store.get(doc) is not None, 20)
    finally:
        second.request_stop()
        thread.join(10)
