"""Fuzz every bus socket of a real running forwarder and commander (subprocesses, as in
production) — events PULL, ingest ROUTER, results PULL, commands XPUB (what subscribers
send), control REP: random bytes, random msgpack values, event-shaped maps, multipart
messages, and raw garbage written straight into the ipc socket files.

After each example the service must still answer ``status`` and its rejection counters
must match, reason by reason, what the oracle (the pure functions fuzzed in
test_envelope_fuzz.py) says was invalid; after the run a good event (a command, for the
commander) must still go all the way to the reference server, and every valid fuzz event
must have arrived there, none twice.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
import zmq.utils.monitor
from hypothesis import given
from hypothesis import strategies as st

from bus.control import READ_ONLY_COMMANDS, request
from bus.envelope import REASONS, decode_frame
from bus.errors import BusError, InvalidEvent
from bus.executor import Executor
from bus.sockets import SocketOptions, max_frame_bytes
from commander import results
from core.config import Config
from core.service import endpoints_from_config
from forwarder.render import Renderer
from tests.fixtures.agent import EnrolledAgent
from tests.fixtures.commander import Proc
from tests.fixtures.commander import write_config as commander_config
from tests.fixtures.common import wait_for
from tests.fixtures.forwarder import ForwarderProcess
from tests.fuzz.strategies import ANY_VALUE, FRAMES, WEIRD_STRINGS, fuzz_settings, packable
from tests.fuzz.test_envelope_fuzz import command_shape_gap

FAST = {"batch_interval": "100ms", "backoff_initial": "50ms", "backoff_max": "500ms"}
#: how long a reply or a counter may take to show up
WAIT = 10.0

#: a message as a list of frames: usually one, sometimes several (multipart)
MESSAGES = st.one_of(
    FRAMES.map(lambda f: [f]),
    FRAMES.map(lambda f: [f]),
    st.lists(FRAMES, min_size=2, max_size=3),
)


def _status(endpoint: str) -> dict[str, Any]:
    return request(endpoint, {"cmd": "status"}, timeout=5.0)


def _raw_garbage(endpoint: str, data: bytes) -> None:
    """Write bytes straight into an ipc socket file (no ZMTP handshake at all)."""
    path = endpoint.removeprefix("ipc://")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.settimeout(2)
        raw.connect(path)
        try:
            raw.sendall(data)
        except OSError:
            pass  # libzmq may hang up on garbage at once: that is its right


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def agent(enroll_agent: Callable[..., EnrolledAgent]) -> EnrolledAgent:
    return enroll_agent(
        sections={
            "forwarder": FAST,
            "commander": {"republish_interval": "300ms", "hello_grace": "1s"},
        }
    )


@pytest.fixture
def forwarder(
    agent: EnrolledAgent, forwarder_process: Callable[..., ForwarderProcess]
) -> ForwarderProcess:
    return forwarder_process(agent.config, **FAST)


class Oracle:
    """What the forwarder must count for the messages sent so far."""

    def __init__(self) -> None:
        self.renderer = Renderer()
        self.rejected: Counter[str] = Counter()
        self.received = 0
        self.delivered = 0  # valid events the server accepts
        #: valid on the bus, quarantined by the forwarder: refused by the server (see
        #: test_envelope_fuzz) or accepted with a failed result item
        self.quarantined = 0

    def events(self, objs: list[Any]) -> list[dict[str, Any]]:
        """Judge decoded items; returns the rejections as the ingest reply lists them."""
        rejected = []
        for index, obj in enumerate(objs):
            try:
                stateful, _lines = self.renderer.render(obj)
            except InvalidEvent as exc:
                assert exc.reason in REASONS
                self.rejected[exc.reason] += 1
                rejected.append({"index": index, "reason": exc.reason, "message": exc.message})
                continue
            self.received += 1
            if stateful and command_shape_gap(obj):
                self.quarantined += 1  # refused by the server (400), bisected out
                continue
            self.delivered += 1
            if stateful and not self._applies(obj):
                self.quarantined += 1  # accepted, but its item failed (404): recorded
        return rejected

    def _applies(self, obj: dict[str, Any]) -> bool:
        """Whether the forwarder counts this stateful event as delivered: the server's
        409 to a create and 404 to a delete are states it already holds, a 404 to an
        update is sent again as a create; only results of commands the server does not
        know (none while fuzzing) are failures."""
        return bool(obj["module"] != "command")

    def frame(self, frame: bytes, max_bytes: int) -> dict[str, Any]:
        """Judge one frame; returns the ingest reply it must get."""
        try:
            objs = decode_frame(frame, max_bytes)
        except InvalidEvent as exc:
            return self.frame_error(exc.reason, exc.message)
        rejected = self.events(objs)
        accepted = len(objs) - len(rejected)
        if rejected:
            return {"ok": False, "accepted": accepted, "error": "rejected", "rejected": rejected}
        return {"ok": True, "accepted": accepted}

    def frame_error(self, reason: str, message: str) -> dict[str, Any]:
        self.rejected[reason] += 1
        return {
            "ok": False,
            "accepted": 0,
            "error": reason,
            "rejected": [{"index": -1, "reason": reason, "message": message}],
        }

    def matches(self, status: dict[str, Any]) -> bool:
        counted = {k: v for k, v in status["rejected"].items() if v}
        return counted == dict(self.rejected) and status["received"] == self.received


def _check_delivery(agent: EnrolledAgent, fw: ForwarderProcess, oracle: Oracle) -> None:
    """A good event sent now arrives, and so did every valid fuzz event (exactly once)."""
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 2000)
    push.connect(endpoints_from_config(agent.config).events)
    marker = {"module": "fuzz-check", "collector": "after", "data": {"ok": True}}
    push.send(msgpack.packb(marker))
    push.close()
    agent.server.wait_for_events(1, module="fuzz-check", timeout=WAIT)
    total = oracle.delivered + 1
    agent.server.wait_for_events(total, timeout=20)
    wait_for(lambda: fw.status()["queue_events"] == 0, timeout=20)
    status = fw.status()
    if status["quarantined"] != oracle.quarantined:
        control = endpoints_from_config(agent.config).control("forwarder")
        entries = request(control, {"cmd": "quarantine_list", "limit": 20})["entries"]
        raise AssertionError(
            f"{status['quarantined']} events quarantined, {oracle.quarantined} expected: "
            + "\n".join(f"{e['status']} {e['message']}: {e['event'][:300]!r}" for e in entries)
        )
    assert agent.server.count_events() == total, "an event was duplicated or lost"
    print(
        f"fuzz figures: {status['frames']} fast-path messages, {status['ingest_requests']} "
        f"ingest requests, {oracle.received} valid events ({oracle.delivered} delivered, "
        f"{oracle.quarantined} quarantined), rejected by reason "
        f"{dict(sorted(oracle.rejected.items()))}"
    )


# -- forwarder ------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_fast_path_survives_anything_and_counts_every_rejection(
    agent: EnrolledAgent, forwarder: ForwarderProcess, ctx: zmq.Context
) -> None:
    endpoint = endpoints_from_config(agent.config).events
    control = endpoints_from_config(agent.config).control("forwarder")
    max_bytes = agent.config.bus.max_message_bytes
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(endpoint)
    oracle = Oracle()

    @fuzz_settings(max_examples=60)
    @given(st.lists(MESSAGES, min_size=1, max_size=8), st.one_of(st.none(), st.binary()))
    def run(messages: list[list[bytes]], raw: bytes | None) -> None:
        for frames in messages:
            push.send_multipart(frames)
            if len(frames) > 1:
                oracle.rejected["multipart"] += 1
            else:
                oracle.frame(frames[0], max_bytes)
        if raw is not None:
            _raw_garbage(endpoint, raw)
        wait_for(lambda: oracle.matches(_status(control)), timeout=WAIT)

    run()
    _check_delivery(agent, forwarder, oracle)


@pytest.mark.timeout(120)
def test_ingest_answers_every_request_with_the_exact_verdict(
    agent: EnrolledAgent, forwarder: ForwarderProcess, ctx: zmq.Context
) -> None:
    endpoint = endpoints_from_config(agent.config).ingest
    control = endpoints_from_config(agent.config).control("forwarder")
    max_bytes = agent.config.bus.max_message_bytes
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    oracle = Oracle()

    @fuzz_settings(max_examples=60)
    @given(
        st.lists(st.tuples(st.booleans(), MESSAGES), min_size=1, max_size=6),
        st.one_of(st.none(), st.binary()),
    )
    def run(requests: list[tuple[bool, list[bytes]]], raw: bytes | None) -> None:
        for delimited, frames in requests:
            # REQ clients put an empty delimiter first; the reply must mirror it
            envelope = [b""] if delimited else []
            dealer.send_multipart([*envelope, *frames])
            if len(frames) == 1:
                expected = oracle.frame(frames[0], max_bytes)
            else:
                text = f"a request must be one frame, got {len(frames)}"
                expected = oracle.frame_error("multipart", text)
            assert dealer.poll(int(WAIT * 1000)), "the forwarder did not answer"
            reply = dealer.recv_multipart()
            assert reply[:-1] == envelope
            assert _without_messages(msgpack.unpackb(reply[-1], raw=False)) == _without_messages(
                expected
            )
        if raw is not None:
            _raw_garbage(endpoint, raw)
        assert oracle.matches(_status(control))

    run()
    _check_delivery(agent, forwarder, oracle)


def _without_messages(reply: dict[str, Any]) -> dict[str, Any]:
    """The reply with each rejection's message checked (a non-empty text) and left out:
    its wording may differ with the interpreter's recursion limit (deeply nested values are
    named by their kind when repr() cannot go that deep; hypothesis raises the limit)."""
    out = dict(reply)
    if "rejected" in out:
        for item in out["rejected"]:
            assert isinstance(item["message"], str) and item["message"], item
        out["rejected"] = [{k: v for k, v in r.items() if k != "message"} for r in out["rejected"]]
    return out


# -- commander ------------------------------------------------------------------------------
ID = st.one_of(WEIRD_STRINGS, ANY_VALUE)
RESULT_MAPS = st.one_of(
    st.fixed_dictionaries({"ack": ID}),
    st.fixed_dictionaries(
        {"id": ID},
        optional={"code": st.one_of(st.integers(-2, 6), ANY_VALUE), "message": ID},
    ),
    st.fixed_dictionaries(
        {"hello": st.one_of(st.lists(WEIRD_STRINGS, max_size=4), ANY_VALUE)},
        optional={"executor": ID},
    ),
)
RESULT_MESSAGES = st.one_of(
    MESSAGES,
    RESULT_MAPS.map(packable).filter(lambda f: f is not None).map(lambda f: [f]),
    RESULT_MAPS.map(packable).filter(lambda f: f is not None).map(lambda f: [f]),
)


def _expected_commander_counts(frames: list[bytes], max_bytes: int, counts: Counter[str]) -> None:
    try:
        message = results.parse(frames, max_bytes)
    except InvalidEvent as exc:
        assert exc.reason in REASONS
        counts[f"bad_input_{exc.reason}"] += 1
        return
    if isinstance(message, results.Hello):
        counts["hellos"] += 1
    elif isinstance(message, results.Ack):
        counts["acks_unknown"] += 1  # nothing is in flight while fuzzing
    else:
        counts["results_unknown"] += 1


@pytest.fixture
def commander(
    agent: EnrolledAgent, forwarder: ForwarderProcess, procs: Callable[..., Proc], tmp_path: Path
) -> Proc:
    """``agentbus commander`` as a subprocess (with the forwarder it reports through)."""
    cfg = commander_config(agent.config, tmp_path / "commander.toml")
    proc = procs("commander", "-m", "agent.main", "commander", "--config", str(cfg))
    control = endpoints_from_config(agent.config).control("commander")

    def up() -> dict[str, Any] | None:
        assert proc.popen.poll() is None, proc.output()
        try:
            return _status(control)
        except BusError:
            return None

    wait_for(up, timeout=20)
    return proc


@pytest.mark.timeout(120)
def test_commander_results_socket_survives_anything_and_still_runs_commands(
    agent: EnrolledAgent, commander: Proc, ctx: zmq.Context
) -> None:
    config: Config = agent.config
    eps = endpoints_from_config(config)
    control = eps.control("commander")
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.connect(eps.results)
    expected: Counter[str] = Counter()

    def counted(status: dict[str, Any]) -> dict[str, int]:
        out = {f"bad_input_{k}": v for k, v in status["bad_input"].items() if v}
        out.update({f"{k}_unknown": v for k, v in status["unknown"].items() if v})
        if status["hellos"]:
            out["hellos"] = status["hellos"]
        return out

    # The commands XPUB reads what subscribers send too: (un)subscriptions, or anything an
    # XSUB peer writes. Nothing is counted there; the commander must simply carry on.
    xsub = ctx.socket(zmq.XSUB)
    xsub.setsockopt(zmq.LINGER, 0)
    xsub.connect(eps.commands)

    @fuzz_settings(max_examples=60)
    @given(
        st.lists(RESULT_MESSAGES, min_size=1, max_size=8),
        st.one_of(st.none(), st.binary()),
        st.lists(
            st.lists(
                st.one_of(
                    st.binary(max_size=16), st.binary(max_size=12).map(lambda b: b"\x01" + b)
                ),
                min_size=1,
                max_size=3,
            ),
            max_size=3,
        ),
    )
    def run(
        messages: list[list[bytes]], raw: bytes | None, subscriptions: list[list[bytes]]
    ) -> None:
        for frames in subscriptions:
            xsub.send_multipart(frames)
        for frames in messages:
            push.send_multipart(frames)
            _expected_commander_counts(frames, config.bus.max_message_bytes, expected)
        if raw is not None:
            _raw_garbage(eps.results, raw)
            _raw_garbage(eps.commands, raw)
        wait_for(lambda: counted(_status(control)) == dict(expected), timeout=WAIT)

    run()
    print(f"commander fuzz figures: {dict(sorted(expected.items()))}")

    # the command path still works end to end: server → commander → executor → forwarder
    executor = Executor(["fuzz"], name="fuzz-check", run_dir=str(config.agent.run_dir))
    executor.handler("check")(lambda command: (0, "still here"))
    executor.start()
    try:
        wait_for(lambda: "fuzz" in str(_status(control).get("executors")), timeout=WAIT)
        doc = agent.server.queue_command(agent.credentials.uuid, name="fuzz.check")
        wait_for(lambda: agent.server.command_results(doc), timeout=20)
        [result] = agent.server.command_results(doc)
        assert (result["code"], result["message"]) == (0, "still here")
    finally:
        executor.stop()
    assert commander.popen.poll() is None


# -- control sockets ------------------------------------------------------------------------
CONTROL_REQUESTS = st.one_of(
    st.binary(max_size=32),
    ANY_VALUE.map(lambda v: packable(v) or b"\xc1"),
    st.fixed_dictionaries(
        {
            "cmd": st.one_of(
                st.sampled_from(
                    ["status", "quarantine_list", "quarantine_retry", "quarantine_drop"]
                ),
                WEIRD_STRINGS,
                ANY_VALUE,
            )
        },
        optional={"limit": ANY_VALUE, "after": ANY_VALUE, "ids": ANY_VALUE, "all": ANY_VALUE},
    ).map(lambda m: packable(m) or b"\xc1"),
)


#: the control commands each service answers
CONTROL_COMMANDS = {
    "forwarder": {"status", "quarantine_list", "quarantine_retry", "quarantine_drop"},
    "commander": {"status"},
}


def _control_verdict(frames: list[bytes], handlers: set[str]) -> str | None:
    """The reason a request on the status socket is refused for, None when a handler
    gets it (commands that change something are the admin socket's alone)."""
    if len(frames) != 1:
        return "multipart"
    try:
        # maps with keys of any type decode (the bus decodes them so); "cmd" must be a str
        request = msgpack.unpackb(frames[0], raw=False, strict_map_key=False)
    except Exception:
        return "not_msgpack"
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        return "not_map"
    if request["cmd"] not in handlers:
        return "unknown_command"
    return None if request["cmd"] in READ_ONLY_COMMANDS else "admin_only"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("service", ["forwarder", "commander"])
def test_control_sockets_answer_every_request_and_keep_serving(
    agent: EnrolledAgent, service: str, request: pytest.FixtureRequest, ctx: zmq.Context
) -> None:
    """Every request is answered, bad ones are counted by reason in ``status``
    (``control_rejected: {reason: n}``), and the service goes on answering. Found by this
    test: a multipart request killed the control thread (REP may not answer before it
    read every frame), so the service stopped answering status."""
    process = request.getfixturevalue(service)
    endpoint = endpoints_from_config(agent.config).control(service)
    handlers = CONTROL_COMMANDS[service]
    expected: Counter[str] = Counter()

    def counted() -> dict[str, int]:
        status = _status(endpoint)  # not counted: a good request
        return {k: v for k, v in status["control_rejected"].items() if v}

    @fuzz_settings(max_examples=50)
    @given(st.lists(CONTROL_REQUESTS, min_size=1, max_size=3), st.one_of(st.none(), st.binary()))
    def run(frames: list[bytes], raw: bytes | None) -> None:
        # a REQ-shaped request (empty delimiter, then one or more frames) from a DEALER
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(endpoint)
        try:
            dealer.send_multipart([b"", *frames])
            assert dealer.poll(3000), f"no answer to {frames!r}"
            empty, body = dealer.recv_multipart()
            reply = msgpack.unpackb(body, raw=False)
            assert empty == b"" and isinstance(reply, dict) and "ok" in reply, reply
        finally:
            dealer.close(linger=0)
        reason = _control_verdict(frames, handlers)
        if reason is not None:
            expected[reason] += 1
            assert reply["ok"] is False and reply["error"], reply
        if raw is not None:
            _raw_garbage(endpoint, raw)
        assert counted() == dict(expected)

    run()
    popen = process.proc if service == "forwarder" else process.popen
    assert popen is not None and popen.poll() is None


# -- frames near the size limit -------------------------------------------------------------
#: a small bus.max_message_bytes, so that frames around it are cheap
SMALL_LIMIT = 64 * 1024
#: the forwarder's ZMQ_MAXMSGSIZE for it: larger frames never reach its memory
SMALL_MAX_FRAME = max_frame_bytes(SocketOptions(max_message_bytes=SMALL_LIMIT))
SIZES = st.one_of(
    st.sampled_from(
        [SMALL_LIMIT - 1, SMALL_LIMIT, SMALL_LIMIT + 1, SMALL_MAX_FRAME, SMALL_MAX_FRAME + 1]
    ),
    st.integers(SMALL_LIMIT - 4096, SMALL_LIMIT + 4096),
    st.integers(SMALL_MAX_FRAME - 4096, SMALL_MAX_FRAME + 4096),
)


def _frame_of_size(size: int, seq: int) -> bytes:
    """A valid one-event frame of exactly ``size`` bytes (three padding strings, each kept
    between 256 and 65535 characters so that their msgpack headers do not change size)."""
    pads = {"a": "", "b": "", "c": ""}
    base = {"module": "sizes", "collector": "fuzz", "data": {"n": seq, **pads}}
    rest = size - len(msgpack.packb(base)) - 2 * len(pads)  # a str16 header is 2 bytes more
    for key in pads:
        left = len(pads) - 1 - list(pads).index(key)  # pads still to fill after this one
        take = min(65535, rest - 256 * left)
        base["data"][key] = key * take
        rest -= take
    frame = msgpack.packb(base)
    assert len(frame) == size, (len(frame), size)
    return frame


@pytest.mark.timeout(180)
def test_frames_at_just_under_and_just_over_the_size_limit(
    enroll_agent: Callable[..., EnrolledAgent],
    forwarder_process: Callable[..., ForwarderProcess],
    ctx: zmq.Context,
) -> None:
    """On the ingest socket of a real forwarder: a frame up to max_message_bytes is
    committed; one over it but within the small margin is refused with ``too_large``
    (answered and counted); a larger one is dropped by libzmq with the sender's connection
    (never read into memory, nothing counted); the forwarder goes on serving."""
    agent = enroll_agent(sections={"bus": {"max_message_bytes": SMALL_LIMIT}, "forwarder": FAST})
    fw = forwarder_process(agent.config, **FAST)
    endpoint = endpoints_from_config(agent.config).ingest
    expected = {"accepted": 0, "too_large": 0}
    seq = iter(range(10**9))

    @fuzz_settings(max_examples=30)
    @given(SIZES)
    def run(size: int) -> None:
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        monitor = dealer.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
        dealer.connect(endpoint)
        try:
            assert monitor.poll(5000), "no handshake with the forwarder"
            monitor.recv_multipart()  # connected
            dealer.send(_frame_of_size(size, next(seq)))
            if size > SMALL_MAX_FRAME:
                assert monitor.poll(5000), f"a {size}-byte frame did not reset the connection"
                event = zmq.utils.monitor.parse_monitor_message(monitor.recv_multipart())
                assert event["event"] == zmq.EVENT_DISCONNECTED
                assert not dealer.poll(0)
                return
            assert dealer.poll(10_000), f"no answer to a {size}-byte frame"
            reply = msgpack.unpackb(dealer.recv(), raw=False)
            if size <= SMALL_LIMIT:
                assert reply == {"ok": True, "accepted": 1}, reply
                expected["accepted"] += 1
            else:
                assert reply["ok"] is False and reply["error"] == "too_large", reply
                expected["too_large"] += 1
        finally:
            dealer.disable_monitor()
            monitor.close(linger=0)
            dealer.close(linger=0)
        status = fw.status()
        assert status["rejected"].get("too_large", 0) == expected["too_large"]
        assert status["received"] == expected["accepted"]

    run()
    print(f"size-limit figures: {expected}")
    assert fw.proc is not None and fw.proc.poll() is None
    agent.server.wait_for_events(expected["accepted"], module="sizes", timeout=20)
