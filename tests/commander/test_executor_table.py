"""The executor table: indexed by topic, capped, pruned on its TTL, refusals counted.

A flood of hellos (many executors, many topics each) once made every routing decision
scan every hello ever heard; these tests send such a flood and check that routing stays
right, that the caps refuse and count, and that silent executors are forgotten.
"""

from __future__ import annotations

import threading

import msgpack
import pytest
import zmq

from commander.command import ServerCommand
from commander.fanout import PRUNE_SECONDS, ExecutorTable, Fanout
from commander.metrics import COMMANDER, EXECUTORS_REFUSED
from commander.results import Hello, parse
from core.config import config_from_dict
from core.metrics import Registry


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def table(clock: Clock, **kw: object) -> tuple[ExecutorTable, Registry]:
    metrics = Registry(COMMANDER)
    return ExecutorTable(30.0, clock, metrics=metrics, **kw), metrics  # type: ignore[arg-type]


def hello_frame(name: str, topics: list[str]) -> bytes:
    return msgpack.packb({"hello": topics, "executor": name})


def command(doc: str, topic: str) -> ServerCommand:
    return ServerCommand(document_id=doc, name=f"{topic}.run", timeout=60.0, received_at=1000.0)


def test_a_flood_of_hellos_with_many_topics_still_routes_every_command_right(tmp_path):
    """150+ executors naming 64 topics each (parsed from real hello frames), then commands
    for served and unserved topics published over a real XPUB to a real subscriber."""
    clock = Clock()
    executors, metrics = table(clock)
    for i in range(200):
        topics = [f"mod{(i + k) % 300}" for k in range(64)]
        message = parse([hello_frame(f"ex{i}", topics)], 4 * 1024 * 1024)
        assert isinstance(message, Hello)
        executors.hello(message)
    assert len(executors) == 200
    assert metrics.total(EXECUTORS_REFUSED) == 0
    served = {f"mod{n % 300}" for n in range(263)}
    assert all(executors.is_live(t) for t in served)
    assert not executors.is_live("mod299") and not executors.is_live("other")

    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.XPUB)
    sub = ctx.socket(zmq.SUB)
    try:
        endpoint = f"ipc://{tmp_path}/commands.sock"
        pub.bind(endpoint)
        sub.connect(endpoint)
        sub.setsockopt(zmq.SUBSCRIBE, b"mod7")
        assert pub.poll(5000), "the subscription did not arrive"
        pub.recv()
        fanout = Fanout(
            pub,
            executors,
            republish_interval=5.0,
            hello_grace=0.0,
            clock=clock,
            wall=lambda: 1001.0,
        )
        fanout.add(command("d-served", "mod7"))
        fanout.add(command("d-unserved", "mod299"))
        first, verdicts = fanout.tick()
        assert [f.command.document_id for f in first] == ["d-served"]
        assert [(v.document_id, v.reason) for v in verdicts] == [("d-unserved", "no_executor")]
        assert sub.poll(5000)
        topic, body = sub.recv_multipart()
        assert topic == b"mod7" and msgpack.unpackb(body)["id"] == "d-served"
    finally:
        sub.close(linger=0)
        pub.close(linger=0)


def test_too_many_executors_are_refused_and_counted_the_known_ones_keep_working():
    clock = Clock()
    executors, metrics = table(clock, max_executors=3)
    for i in range(3):
        assert executors.hello(Hello((f"t{i}",), f"ex{i}")) == [f"t{i}"]
    # the attack: more executors than the table holds
    for i in range(3, 50):
        assert executors.hello(Hello((f"t{i}",), f"ex{i}")) == []
    assert metrics.get(EXECUTORS_REFUSED, reason="too_many_executors") == 47
    assert executors.refused == {"too_many_executors": 47}
    assert sorted(executors.live()) == ["ex0", "ex1", "ex2"]
    assert not executors.is_live("t3")
    # a known executor saying hello again is not a new one
    assert executors.hello(Hello(("t0", "t0b"), "ex0")) == ["t0b"]
    assert executors.is_live("t0b")


def test_too_many_topics_for_one_executor_are_refused_and_counted():
    clock = Clock()
    executors, metrics = table(clock, max_topics_per_executor=4)
    assert executors.hello(Hello(("a", "b", "c", "d"), "ex")) == ["a", "b", "c", "d"]
    assert executors.hello(Hello(tuple("abcde"), "other")) == []  # 5 in one hello
    # 4 live topics already: one more, in a second hello, is over the cap too
    assert executors.hello(Hello(("e",), "ex")) == []
    assert metrics.get(EXECUTORS_REFUSED, reason="too_many_topics") == 2
    assert not executors.is_live("e")
    assert executors.live() == {"ex": ["a", "b", "c", "d"]}
    # the same topics again (a periodic hello) are fine, and so are repeated names
    assert executors.hello(Hello(("a", "a", "b", "c", "d"), "ex")) == []


def test_an_expired_executor_is_pruned_and_its_room_given_to_another():
    clock = Clock()
    executors, metrics = table(clock, max_executors=2)
    executors.hello(Hello(("old",), "gone"))
    clock.now += 20
    executors.hello(Hello(("kept",), "alive"))
    clock.now += 15  # "gone" is 35 s silent (ttl 30), "alive" 15 s
    assert not executors.is_live("old") and executors.is_live("kept")
    # the table is full by count, but "gone" has expired: the newcomer takes its place
    assert executors.hello(Hello(("new",), "newcomer")) == ["new"]
    assert metrics.total(EXECUTORS_REFUSED) == 0
    assert sorted(executors.live()) == ["alive", "newcomer"]
    # pruning also happens on its own clock, not only when the table is full
    clock.now += 31 + PRUNE_SECONDS
    executors.hello(Hello(("x",), "alive"))
    assert len(executors) == 1
    assert executors.live() == {"alive": ["x"]}


def test_from_config_reads_the_commander_limits():
    config = config_from_dict(
        {"commander": {"executor_ttl": "10s", "max_executors": 7, "max_topics_per_executor": 3}}
    )
    executors = ExecutorTable.from_config(config)
    assert (executors.ttl, executors.max_executors, executors.max_topics_per_executor) == (
        10.0,
        7,
        3,
    )


@pytest.mark.timeout(60)
def test_the_table_is_thread_safe_under_concurrent_hellos_and_lookups():
    executors = ExecutorTable(30.0, max_executors=100, max_topics_per_executor=8)
    stop = threading.Event()
    errors: list[BaseException] = []

    def look() -> None:
        try:
            while not stop.is_set():
                executors.is_live("t3")
                executors.live()
        except BaseException as exc:  # pragma: no cover - the failure is reported below
            errors.append(exc)

    reader = threading.Thread(target=look)
    reader.start()
    try:
        for i in range(300):
            n = i % 150
            executors.hello(Hello(tuple(f"t{(n + k) % 20}" for k in range(8)), f"ex{n}"))
    finally:
        stop.set()
        reader.join(10)
    assert not errors
    assert len(executors) == 100
    assert executors.refused == {"too_many_executors": 100}  # ex100-ex149, twice each
