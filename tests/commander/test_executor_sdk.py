"""The executor SDK against a bare XPUB/PULL pair: hello, ack, result, dedupe, bad input."""

from __future__ import annotations

import threading
from pathlib import Path

import msgpack
import pytest

from bus import Executor
from bus.executor import Command, InvalidCommand


def cmd(cid: str, name: str, **args: object) -> dict:
    return {"id": cid, "name": name, "args": args, "timeout": 30, "issued_at": 1.0}


@pytest.fixture
def serve(run_dir):
    started: list[Executor] = []

    def start(executor: Executor) -> Executor:
        executor.start()
        started.append(executor)
        return executor

    yield start
    for ex in started:
        ex.stop()


def test_hello_ack_and_result(fake_commander, run_dir, serve):
    ex = Executor(["myapp"], name="mine", run_dir=str(run_dir))
    seen: list[Command] = []

    @ex.handler("scan")
    def scan(command: Command):
        seen.append(command)
        return 0, f"scanned {len(command.args['paths'])}"

    serve(ex)
    hello = fake_commander.wait(lambda m: "hello" in m)
    assert hello == {"hello": ["myapp"], "executor": "mine"}
    fake_commander.wait_subscribed("myapp")
    fake_commander.publish("myapp", cmd("d1", "myapp.scan", paths=["/a", "/b"]))
    assert fake_commander.wait(lambda m: "ack" in m) == {"ack": "d1"}
    result = fake_commander.wait(lambda m: m.get("id") == "d1")
    assert result == {"id": "d1", "code": 0, "message": "scanned 2"}
    assert seen[0].verb == "scan" and seen[0].topic == "myapp" and seen[0].timeout == 30


def test_duplicate_is_acked_again_but_run_once(fake_commander, run_dir, serve):
    calls: list[str] = []
    ex = serve(
        Executor(
            ["myapp"], run_dir=str(run_dir), handlers={"run": lambda c: calls.append(c.id) or "ok"}
        )
    )
    fake_commander.wait_subscribed("myapp")
    fake_commander.publish("myapp", cmd("d1", "myapp.run"))
    fake_commander.wait(lambda m: m.get("id") == "d1")
    fake_commander.publish("myapp", cmd("d1", "myapp.run"))
    fake_commander.wait(
        lambda m: sum(1 for x in fake_commander.received if x.get("ack") == "d1") == 2
    )
    fake_commander.publish("myapp", cmd("d2", "myapp.run"))
    fake_commander.wait(lambda m: m.get("id") == "d2")
    assert calls == ["d1", "d2"]
    assert ex.stats["duplicates"] == 1


def test_unknown_action_bad_args_and_crashing_handler_fail_with_code_1(
    fake_commander, run_dir, serve
):
    def boom(_c: Command):
        raise RuntimeError("disk on fire")

    def picky(_c: Command):
        raise InvalidCommand("paths must be a list")

    def missing(_c: Command):
        Path("/var/lib/secret-layout/x.conf").read_text()  # FileNotFoundError naming it

    serve(
        Executor(
            ["myapp"],
            run_dir=str(run_dir),
            handlers={"boom": boom, "picky": picky, "missing": missing, "ok": lambda c: None},
        )
    )
    fake_commander.wait_subscribed("myapp")
    fake_commander.publish("myapp", cmd("u", "myapp.nothing"))
    fake_commander.publish("myapp", cmd("b", "myapp.boom"))
    fake_commander.publish("myapp", cmd("p", "myapp.picky"))
    fake_commander.publish("myapp", cmd("m", "myapp.missing"))
    fake_commander.publish("myapp", {"id": "a", "name": "myapp.ok", "args": [1, 2]})
    ids = ("u", "b", "p", "m", "a")
    got = {i: fake_commander.wait(lambda m, i=i: m.get("id") == i) for i in ids}
    assert got["u"] == {"id": "u", "code": 1, "message": "Command is not valid"}
    assert got["b"] == {"id": "b", "code": 1, "message": "RuntimeError: disk on fire"}
    assert got["p"] == {"id": "p", "code": 1, "message": "paths must be a list"}
    # an OSError's words reach the server, the local path it names does not
    assert got["m"] == {
        "id": "m",
        "code": 1,
        "message": "FileNotFoundError: No such file or directory",
    }
    assert got["a"] == {"id": "a", "code": 1, "message": "Command is not valid"}


def test_garbage_and_foreign_topics_are_ignored(fake_commander, run_dir, serve):
    ran = threading.Event()
    ex = serve(Executor(["agent"], run_dir=str(run_dir), handlers={"restart": lambda c: ran.set()}))
    fake_commander.wait_subscribed("agent")
    fake_commander.publish("agent", b"\xc1 not msgpack")
    fake_commander.publish("agent", {"name": "restart"})  # no id
    # "agentx" matches the "agent" subscription prefix in ZeroMQ; the SDK must drop it.
    fake_commander.publish("agentx", cmd("x", "restart"))
    fake_commander.publish("agent", cmd("ok", "restart"))
    fake_commander.wait(lambda m: m.get("id") == "ok")
    assert not any(m.get("id") == "x" or m.get("ack") == "x" for m in fake_commander.received)
    assert ex.stats["bad_input"] == 2


def test_executor_started_before_the_commander_says_hello_at_once(run_dir, serve):
    """The supervisor may start executors first: the hello must not wait a whole interval."""
    from tests.fixtures.commander import FakeCommander

    serve(Executor(["early"], run_dir=str(run_dir), handlers={"work": lambda c: "done"}))
    commander = FakeCommander(run_dir)
    try:
        commander.wait(lambda m: m.get("hello") == ["early"], timeout=2)
        commander.wait_subscribed("early")
        commander.publish("early", cmd("e1", "early.work"))
        assert commander.wait(lambda m: m.get("id") == "e1")["message"] == "done"
    finally:
        commander.close()


def test_handler_result_shapes():
    from bus.executor import _normalise

    assert _normalise("fine") == (0, "fine")
    assert _normalise(None) == (0, "")
    assert _normalise((3, "late")) == (3, "late")
    assert _normalise((7, "x"))[0] == 1
    assert msgpack  # keep the import honest for readers: the wire is msgpack


def test_the_example_executor_runs_as_a_script(fake_commander, run_dir):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples" / "executor.py"
    env = {**os.environ, "AGENTBUS_AGENT_RUN_DIR": str(run_dir)}
    proc = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        fake_commander.wait_subscribed("example", timeout=15)
        fake_commander.publish("example", cmd("e1", "example.echo", text="hello"))
        fake_commander.publish("example", cmd("e2", "example.disk-usage", path="/"))
        fake_commander.publish("example", cmd("e3", "example.disk-usage", path=5))
        assert fake_commander.wait(lambda m: m.get("id") == "e1") == {
            "id": "e1",
            "code": 0,
            "message": "hello",
        }
        assert "% used" in fake_commander.wait(lambda m: m.get("id") == "e2")["message"]
        assert fake_commander.wait(lambda m: m.get("id") == "e3")["code"] == 1
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
