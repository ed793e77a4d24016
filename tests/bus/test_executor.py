"""bus.executor's loop: no timer while idle; a commander that appears and a stop wake it."""

from __future__ import annotations

import msgpack
import pytest
import zmq

from bus.executor import Executor
from bus.sockets import bind, make_socket


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def commander(ctx, run_dir):
    """Binds the commander's two sockets when called; returns its results (PULL) socket."""
    bindings = []

    def bind_both() -> zmq.Socket:
        for kind, name in ((zmq.PUB, "commands"), (zmq.PULL, "results")):
            bindings.append(bind(make_socket(ctx, kind), f"ipc://{run_dir}/{name}.sock"))
        return bindings[-1].sock

    yield bind_both
    for binding in bindings:
        binding.close(linger_ms=0)


@pytest.mark.timeout(30)
def test_a_commander_that_appears_gets_the_hello_at_once(ctx, run_dir, commander) -> None:
    """The unsent hello waits for the socket to be writable, not for a retry timer."""
    executor = Executor(["myapp"], run_dir=str(run_dir), hello_interval=3600, context=ctx)
    thread = executor.start()
    try:
        pull = commander()
        assert pull.poll(10_000), "no hello after the commander bound its sockets"
        assert msgpack.unpackb(pull.recv()) == {"hello": ["myapp"], "executor": "myapp"}
    finally:
        executor.stop()
        thread.join(10)
    assert not thread.is_alive()


@pytest.mark.timeout(30)
def test_the_stop_flag_alone_wakes_the_idle_loop(ctx, run_dir, commander) -> None:
    """SIGTERM's handler only sets the flag: that must end a poll with no timeout."""
    pull = commander()
    executor = Executor(["myapp"], run_dir=str(run_dir), hello_interval=3600, context=ctx)
    thread = executor.start()
    assert pull.poll(10_000)  # the hello went: the loop now sleeps for the next (an hour)
    executor._stop.set()  # what the signal handler does, without stop()'s own wake-up
    thread.join(10)
    assert not thread.is_alive(), "setting the stop flag did not wake the idle executor"
