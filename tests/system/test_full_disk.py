"""The data dir's disk fills up: intake stops cleanly, resumes when space is back, and no
queue file is corrupted.

The data dir is a small tmpfs of its own (we run as root in the sandbox and in CI); the
disk is filled with a ballast file, and the server refuses events meanwhile so the queue
can only grow. An acknowledged event must never be one the forwarder failed to write: the
final tally counts every acknowledged event on the server.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.common import wait_for
from tests.fixtures.system import (
    EventLoad,
    forwarder_counters,
    report,
    tally_events,
    wait_delivered,
)

pytestmark = pytest.mark.system

DISK_BYTES = 24 * 1024 * 1024
#: free space left when the ballast is written
LEFT_FREE = 3 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MB tmpfs, unmounted at teardown (after the agent is gone)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the data dir (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def stalled(events: EventLoad, quiet: float, timeout: float) -> None:
    """Until no event was acknowledged for ``quiet`` seconds."""
    last = [events.acked_count(), time.monotonic()]

    def quiet_for() -> bool:
        now = events.acked_count()
        if now != last[0]:
            last[:] = [now, time.monotonic()]
        return time.monotonic() - last[1] >= quiet

    wait_for(quiet_for, timeout=timeout, interval=0.2)


def integrity(path: Path) -> str:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def fill(disk: Path, leave: int) -> Path:
    ballast = disk / "ballast"
    free = shutil.disk_usage(disk).free
    with open(ballast, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return ballast


@pytest.mark.timeout(180)
def test_a_full_disk_stops_intake_cleanly_and_it_resumes_when_space_is_back(
    small_disk, start_agent
):
    data_dir = small_disk / "data"
    agent, enrolled = start_agent(agent={"data_dir": str(data_dir)})
    server = enrolled.server
    server.set_fault(status=503, path="/api/v1/events")  # nothing drains: the queue grows
    ballast = fill(small_disk, LEFT_FREE)
    events = EventLoad(enrolled.config, "disk", batch=200, pause=0.0).start()
    try:
        # Intake stops: nothing more is acknowledged while the load keeps trying (and the
        # acknowledged path says why: "full" or an error, never "ok").
        stalled(events, quiet=5.0, timeout=90)
        acked_when_full = events.acked_count()
        refusals = {r: n for r, n in events.replies.items() if r != "ok"}
        status = forwarder_counters(agent)
        wait_for(lambda: agent.status()["summary"]["healthy"], timeout=10)  # still answering
        assert events.acked_count() == acked_when_full  # and taking nothing meanwhile

        os.unlink(ballast)  # space comes back
        server.clear_faults()
        events.wait_acked(2000, timeout=60)  # intake resumes
    finally:
        events.stop()
    wait_delivered(server, events)
    ev = tally_events(server, events)
    assert agent.stop() == 0
    checks = {
        p.name: integrity(p)
        for p in sorted((data_dir / "queue").glob("*.db")) + [data_dir / "commands.db"]
        if p.exists()
    }
    report(
        ev.line("full disk")
        + f" ({acked_when_full} acknowledged before the disk was full; refusals while full: "
        f"{refusals}; forwarder said: {status.get('last_error')!r:.100}; "
        f"integrity: {', '.join(f'{k} {v}' for k, v in checks.items())})"
    )
    assert ev.lost == 0, f"acknowledged events never delivered: {ev.missing}"
    assert ev.foreign == 0
    assert set(checks.values()) == {"ok"}, checks
    assert "disk is full" in str(status)  # the forwarder's status says why
    # a clear answer ("full" or an error), not silence until the client gives up
    assert set(refusals) - {"BusTimeout"}, f"no answer on a full disk, only {refusals}"
