"""forwarder.receiver: an idle forwarder sleeps until something happens; a stop wakes it;
one client's flood of acknowledged requests does not starve another client."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest
import zmq

from bus import Ingest, IngestResult, Publisher, make_event
from bus.envelope import encode_events
from core.config import Config
from forwarder.receiver import INFLIGHT_PER_CLIENT
from forwarder.service import Forwarder
from forwarder.store import Store
from tests.fixtures.common import wait_for
from tests.fixtures.forwarder import ForwarderThread

#: the measurement window of the idle test (seconds); the old loops woke ~50 times in it
WINDOW = 1.0
#: context switches allowed in that window, over every thread of the forwarder
MOST_SWITCHES = 5


def _switches(native_id: int | None) -> int:
    try:
        with open(f"/proc/self/task/{native_id}/status", encoding="ascii") as f:
            return sum(int(line.split()[1]) for line in f if "ctxt_switches:" in line)
    except OSError:
        return 0  # the thread ended


@pytest.mark.timeout(60)
def test_an_idle_forwarder_does_not_wake(
    make_config: Callable[..., Config], run_forwarder: Callable[[Config], ForwarderThread]
) -> None:
    """Receiver, writers, senders, control: every wait has a real reason, none a timer."""
    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs /proc")
    before = set(threading.enumerate())
    run_forwarder(make_config())
    threads = [t for t in threading.enumerate() if t not in before]
    assert {t.name for t in threads} >= {"forwarder", "control", "send-stateful-0"}
    # The quietest of a few windows: a thread still settling after the start (on a busy
    # machine) may wake in the first; a loop on a timer wakes in every one.
    windows = []
    for _ in range(3):
        start = {t.native_id: _switches(t.native_id) for t in threads}
        threading.Event().wait(WINDOW)  # the measurement window, not a synchronisation
        woke = {t.name: _switches(t.native_id) - start[t.native_id] for t in threads}
        windows.append(woke)
        if sum(woke.values()) <= MOST_SWITCHES:
            break
    assert min(sum(w.values()) for w in windows) <= MOST_SWITCHES, windows


@pytest.mark.timeout(60)
def test_a_stop_request_wakes_the_idle_forwarder_at_once(
    make_config: Callable[..., Config], run_forwarder: Callable[[Config], ForwarderThread]
) -> None:
    """The receiver, the senders and the control thread wait without a timeout."""
    fw = run_forwarder(make_config())
    started = time.monotonic()
    assert fw.stop(timeout=15) == 0
    assert not fw.alive
    assert time.monotonic() - started < 5.0


class _Store:
    def __init__(self) -> None:
        self.commits = self.rows = self.cleared = 0

    def clear_acked(self) -> None:
        self.cleared += 1


def test_upkeep_is_due_after_activity_only(make_config: Callable[..., Config]) -> None:
    config = make_config({"forwarder": {"clear_acked_interval": "10s"}})
    fw = Forwarder(config)
    store = _Store()
    fw.stores = {"stateless": store}  # type: ignore[dict-item]
    due = fw._upkeep()  # the first tick: one upkeep after the start
    assert due is not None and 9 < due - time.monotonic() <= 10
    assert fw._upkeep() == due
    fw._next_upkeep = time.monotonic() - 1  # its time has come
    assert fw._upkeep() is None and store.cleared == 1
    assert fw._upkeep() is None, "idle: nothing is due, the forwarder does not wake"
    store.commits += 1  # a chunk was committed: an upkeep is due an interval later
    due = fw._upkeep()
    assert due is not None and 9 < due - time.monotonic() <= 10


@pytest.mark.timeout(60)
def test_at_a_trickle_frames_wait_in_the_socket_for_their_chunk_and_none_is_lost(
    make_config: Callable[..., Config], run_forwarder: Callable[[Config], ForwarderThread]
) -> None:
    """Once the rate is known to be low, the PULL socket is read only when the pending
    chunk is due; what waited there goes into that chunk, and is committed."""
    config = make_config(
        {"forwarder": {"chunk_max_delay": "3s", "batch_interval": "1h"}},
    )
    fw = run_forwarder(config)
    receiver = fw.service.receiver
    assert receiver is not None
    sent = 0
    with Publisher(f"ipc://{config.agent.run_dir}/events.sock") as pub:
        deadline = time.monotonic() + 20
        # 20 frames/s until the receiver has measured the rate and waits for the chunk
        while not receiver.waiting_for_frames and time.monotonic() < deadline:
            pub.send("test", "trickle", {"seq": sent})
            sent += 1
            threading.Event().wait(0.05)  # the trickle's pace, not a synchronisation
        assert receiver.waiting_for_frames, "the receiver never waited for a trickle"
        for _ in range(5):  # these wait in the socket, unread, until the chunk is due
            pub.send("test", "trickle", {"seq": sent})
            sent += 1
        assert receiver.frames < sent  # not read yet: the chunk is due in seconds
        wait_for(lambda: fw.status()["received"] == sent, timeout=15)  # read when due
    assert fw.stop(timeout=15) == 0
    assert _queued(config) == sent


def _queued(config: Config) -> int:
    store = Store(config.data_dir / "queue", "stateless", max_bytes=10**9)
    try:
        return store.events
    finally:
        store.close()


@pytest.mark.timeout(60)
def test_frames_waiting_for_a_chunk_an_acknowledged_request_took_are_still_read(
    make_config: Callable[..., Config], run_forwarder: Callable[[Config], ForwarderThread]
) -> None:
    """An acknowledged request commits what is pending, fast-path chunk included: the
    frames that wait in the socket are read when the wait ends all the same."""
    config = make_config(
        {
            "forwarder": {
                "chunk_max_delay": "3s",
                "batch_interval": "1h",
                "clear_acked_interval": "1h",
            }
        },
    )
    fw = run_forwarder(config)
    receiver = fw.service.receiver
    assert receiver is not None
    sent = 0
    with (
        Publisher(f"ipc://{config.agent.run_dir}/events.sock") as pub,
        Ingest(f"ipc://{config.agent.run_dir}/ingest.sock", timeout=10) as ingest,
    ):
        deadline = time.monotonic() + 20
        while not receiver.waiting_for_frames and time.monotonic() < deadline:
            pub.send("test", "trickle", {"seq": sent})
            sent += 1
            threading.Event().wait(0.05)  # the trickle's pace, not a synchronisation
        assert receiver.waiting_for_frames, "the receiver never waited for a trickle"
        assert ingest.send(make_event("test", "acked", {"seq": -1})).ok  # takes the chunk
        sent += 1
        for _ in range(5):
            pub.send("test", "trickle", {"seq": sent})
            sent += 1
        wait_for(lambda: fw.status()["received"] == sent, timeout=15)


class _Flooder(threading.Thread):
    """A hostile client: a raw DEALER that sends big acknowledged batches back to back,
    never waiting for an answer before the next send; counts the answers it gets."""

    def __init__(self, endpoint: str, frame: bytes, count: int) -> None:
        super().__init__(daemon=True)
        self.endpoint, self.frame, self.count = endpoint, frame, count
        self.sent = self.answered = 0
        self.stop = threading.Event()

    def run(self) -> None:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN | zmq.POLLOUT)
        try:
            while not self.stop.is_set() and self.answered < self.count:
                ready = dict(poller.poll(100)).get(sock, 0)
                if ready & zmq.POLLIN:
                    assert msgpack.unpackb(sock.recv())["ok"]
                    self.answered += 1
                if ready & zmq.POLLOUT and self.sent < self.count:
                    sock.send(self.frame, zmq.NOBLOCK)
                    self.sent += 1
        finally:
            sock.close(linger=0)


@pytest.mark.timeout(120)
def test_a_flooding_client_does_not_starve_another_clients_acknowledged_event(
    make_config: Callable[..., Config], run_forwarder: Callable[[Config], ForwarderThread]
) -> None:
    """The attack: one client pipelines 1 MB acknowledged batches as fast as it can while
    the disk is slow (another connection holds the queue's write lock for a while). Another
    client's acknowledged event is committed and answered behind a bounded number of the
    flooder's requests (each client is served in turn, a client with requests waiting for
    the disk skips its turn), not behind everything the flooder sent meanwhile."""
    config = make_config({"forwarder": {"batch_interval": "1h", "clear_acked_interval": "1h"}})
    fw = run_forwarder(config)
    receiver = fw.service.receiver
    assert receiver is not None
    endpoint = f"ipc://{config.agent.run_dir}/ingest.sock"
    batch = [make_event("test", "flood", {"pad": "x" * 1000, "n": i}) for i in range(1000)]
    frame = encode_events(batch)
    assert 1_000_000 < len(frame) < config.bus.max_message_bytes
    flooder = _Flooder(endpoint, frame, count=60)
    slow_disk = sqlite3.connect(config.data_dir / "queue" / "stateless.db", timeout=30)
    slow_disk.execute("BEGIN IMMEDIATE")  # the writer waits for this lock (up to 30 s)
    queue = fw.service.stores["stateless"]
    #: the polite client's answer, and the flood's events on disk when it came
    outcome: list[tuple[IngestResult, int]] = []
    try:
        flooder.start()
        # everything the receiver takes in while the disk is stuck has been taken
        wait_for(
            lambda: (
                receiver.ingest_requests >= flooder.count
                or receiver.figures()["ingest_waiting"] >= 5
            ),
            60,
        )
        with Ingest(endpoint, timeout=60) as polite:

            def send() -> None:
                result = polite.send(make_event("test", "polite", {"marker": "polite-event-1"}))
                outcome.append((result, queue.events - 1))

            sender = threading.Thread(target=send)
            sender.start()
            # the request is read at once, or waits in the socket while the inbox is full
            wait_for(
                lambda: (
                    receiver.ingest_requests > flooder.count
                    or receiver.figures()["ingest_waiting"] >= 5
                ),
                60,
            )
            slow_disk.rollback()  # the disk is fast again
            sender.join(60)
        assert outcome, "no answer"
        result, flood_events = outcome[0]
        assert result.ok and result.accepted == 1, result
        # Committed first: the INFLIGHT_PER_CLIENT requests the flooder had at the disk,
        # as many served while the polite request waited in the socket for room, and what
        # was committed between the answer and the count; not the whole flood (all 60
        # before: the polite request was read at once, but its commit queued behind every
        # earlier one).
        flood_first = flood_events // len(batch)
        assert flood_first <= 4 * INFLIGHT_PER_CLIENT + 4, (flood_first, flooder.count)
        wait_for(lambda: flooder.answered >= flooder.count, 90)  # the flooder is served too
    finally:
        slow_disk.close()
        flooder.stop.set()
        flooder.join(10)
    assert fw.stop(timeout=30) == 0
    store = Store(config.data_dir / "queue", "stateless", max_bytes=10**10)
    try:
        assert store.find_ready([b"polite-event-1"]), "the acknowledged event is not on disk"
        assert store.events == flooder.count * 1000 + 1
    finally:
        store.close()
