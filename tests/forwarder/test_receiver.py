"""forwarder.receiver: an idle forwarder sleeps until something happens; a stop wakes it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bus import Ingest, Publisher, make_event
from core.config import Config
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
    start = {t.native_id: _switches(t.native_id) for t in threads}
    threading.Event().wait(WINDOW)  # the measurement window itself, not a synchronisation
    woke = {t.name: _switches(t.native_id) - start[t.native_id] for t in threads}
    assert sum(woke.values()) <= MOST_SWITCHES, woke


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
