"""A corrupted or truncated queue file at start-up is moved aside; the agent runs on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.config import Config
from forwarder.chunker import Chunk
from forwarder.store import Store
from tests.fixtures.run import clean_env
from tests.fixtures.system import (
    EventLoad,
    children,
    commander_counters,
    forwarder_counters,
    report,
    tally_commands,
    tally_events,
    wait_commands_done,
    wait_delivered,
)

pytestmark = pytest.mark.system


def spoil_queues(config: Config) -> None:
    """stateless.db: not a database at all; stateful.db: a real queue cut in half;
    commands.db (the commander's queue of commands): not a database either."""
    (Path(config.agent.data_dir) / "commands.db").write_bytes(b"\x00garbage" * 1000)
    queue = Path(config.agent.data_dir) / "queue"
    queue.mkdir(parents=True, exist_ok=True)
    (queue / "stateless.db").write_bytes(b"this is not an SQLite file\n" * 4096)
    store = Store(queue, "stateful", max_bytes=1 << 30)
    for _ in range(100):
        store.put(Chunk(body=os.urandom(8000), events=1, ts=time.time()))
    store.close()
    for name in ("stateful.db-wal", "stateful.db-shm"):
        (queue / name).unlink(missing_ok=True)
    size = (queue / "stateful.db").stat().st_size
    os.truncate(queue / "stateful.db", size // 2)


@pytest.mark.timeout(120)
def test_corrupt_and_truncated_queue_files_are_moved_aside_and_do_not_block_the_agent(start_agent):
    agent, enrolled = start_agent(before_start=spoil_queues)  # returns once every service is up
    queue = Path(enrolled.config.agent.data_dir) / "queue"
    counters = forwarder_counters(agent)
    events = EventLoad(enrolled.config, "badqueue").start()
    commands = [
        enrolled.server.queue_command(enrolled.credentials.uuid, name="fetch-config")
        for _ in range(5)
    ]
    try:
        events.wait_acked(2000)
    finally:
        events.stop()
    wait_delivered(enrolled.server, events)
    wait_commands_done(enrolled.server, commands)
    ev = tally_events(enrolled.server, events)
    cmd = tally_commands(enrolled.server, commands)
    data_dir = Path(enrolled.config.agent.data_dir)
    aside = sorted(p.name for p in [*queue.iterdir(), *data_dir.iterdir()] if ".corrupt-" in p.name)
    report(ev.line("corrupt queue") + f" (moved aside: {', '.join(aside)})")
    report(cmd.line("corrupt queue"))
    assert ev.lost == 0
    assert cmd.lost == 0 and cmd.conflicting == 0
    assert any(n.startswith("commands.db.corrupt-") for n in aside)
    commander = commander_counters(agent)
    assert commander["stores_moved_aside"] == 1
    assert "moved aside" in " ".join(commander["store_errors"])
    assert any(n.startswith("stateless.db.corrupt-") for n in aside)
    assert any(n.startswith("stateful.db.corrupt-") for n in aside)
    assert counters["queues_moved_aside"] == 2
    status_text = " ".join(counters["queue_errors"])
    assert "stateless" in status_text and "stateful" in status_text and "moved aside" in status_text
    table = subprocess.run(
        [sys.executable, "-m", "agent.main", "status", "--config", str(agent.config_file)],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(),
    ).stdout
    assert "queue problem at start" in table and "moved aside" in table, table
    log = agent.log.read_text(errors="replace")
    assert "moved aside" in log
    assert children(agent)["forwarder"]["restarts"] == 0
    assert agent.stop() == 0
