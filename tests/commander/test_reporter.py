"""The reporter's idle wait: no timer, woken by new results and by a stop request."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bus.threads import StopEvent
from commander.metrics import COMMANDER
from commander.reporter import Reporter
from commander.store import CommandStore, OutboxItem
from core.metrics import Registry


@pytest.mark.timeout(30)
def test_a_stop_request_ends_the_idle_wait_at_once(
    tmp_path: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CommandStore(tmp_path / "commands.db")
    asked = threading.Event()
    outbox = store.outbox

    def watched(limit: int = 100) -> list[OutboxItem]:
        items = outbox(limit)
        asked.set()
        return items

    monkeypatch.setattr(store, "outbox", watched)
    stop = StopEvent()
    reporter = Reporter(
        store,
        f"ipc://{run_dir}/ingest.sock",
        Registry(COMMANDER),
        stop,
        max_message_bytes=1 << 20,
    )
    reporter.start()
    try:
        assert asked.wait(10), "the reporter never looked at the outbox"
        stop.set()  # not reporter.join(), which wakes it itself
        assert reporter._thread is not None
        reporter._thread.join(5)
        assert not reporter._thread.is_alive(), "a stop request did not wake the idle reporter"
    finally:
        reporter.join(5)
        store.close()
