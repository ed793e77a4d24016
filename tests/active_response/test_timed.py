"""Timed responses: an add with args.timeout is undone by a delete when it ends — also
when the executor was killed (kill -9) and started again meanwhile."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.fixtures.common import wait_for

RECORD = """\
cat >> "$OUT/messages"
echo >> "$OUT/messages"
echo "done"
"""


def messages(ar):
    path = ar.out / "messages"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().split("\n") if line]


def in_force(ar):
    return json.loads((ar.state / "status.json").read_text())["in_force"]


@pytest.mark.timeout(120)
def test_a_timed_add_is_undone_by_a_delete_when_it_ends(ar_env):
    ar = ar_env()
    ar.program("record", RECORD)
    alert = {"data": {"srcip": "198.51.100.4"}}
    started = time.time()
    assert ar.command("record", {"command": "add", "alert": alert, "timeout": 3}) == (0, "done")
    [force] = in_force(ar)
    assert force["program"] == "record" and 2 < force["expires_at"] - started < 5
    wait_for(lambda: len(messages(ar)) == 2, timeout=15)
    add, delete = messages(ar)
    assert time.time() - started >= 3
    assert delete["command"] == "delete" and delete["origin"]["name"] == "timeout"
    assert delete["parameters"] == add["parameters"]
    wait_for(lambda: in_force(ar) == [], timeout=5)
    # a delete from the server before the end cancels the timed one
    assert ar.command("record", {"command": "add", "alert": alert, "timeout": 600})[0] == 0
    assert len(in_force(ar)) == 1
    assert ar.command("record", {"command": "delete", "alert": alert})[0] == 0
    wait_for(lambda: in_force(ar) == [], timeout=5)


@pytest.mark.timeout(150)
def test_the_delete_survives_a_kill_9_and_restart_of_the_executor(ar_env):
    ar = ar_env()
    ar.program("record", RECORD)
    alert = {"data": {"srcip": "198.51.100.5"}}
    assert ar.command("record", {"command": "add", "alert": alert, "timeout": 4})[0] == 0
    [force] = in_force(ar)
    ar.kill9()
    # it ends while nobody runs: no delete now ...
    wait_for(lambda: time.time() > force["expires_at"] + 1, timeout=10, interval=0.2)
    assert [m["command"] for m in messages(ar)] == ["add"]
    # ... and at once after the restart
    ar.start()
    wait_for(lambda: len(messages(ar)) == 2, timeout=15)
    assert messages(ar)[1]["command"] == "delete"
    assert messages(ar)[1]["parameters"]["alert"] == alert
    wait_for(lambda: in_force(ar) == [], timeout=5)


@pytest.mark.timeout(150)
def test_a_kill_9_during_the_add_still_leaves_its_delete(ar_env):
    ar = ar_env()
    # the add is still running when the executor dies: its delete is on disk already
    ar.program(
        "slow",
        'cat >> "$OUT/messages"; echo >> "$OUT/messages"; echo $$ > "$OUT/pid"; exec sleep 30\n',
    )
    args = {"command": "add", "alert": {"data": {"srcip": "198.51.100.6"}}, "timeout": 2}
    doc = ar.queue("slow", args, timeout=8)
    wait_for(lambda: (ar.out / "pid").exists() and (ar.out / "pid").read_text().strip(), timeout=20)
    ar.kill9()
    os.kill(int((ar.out / "pid").read_text()), signal.SIGKILL)  # its orphan, not the test's
    ar.program("slow", 'cat >> "$OUT/messages"; echo >> "$OUT/messages"; echo undone\n')
    ar.start()
    wait_for(lambda: [m["command"] for m in messages(ar)] == ["add", "delete"], timeout=15)
    # the server heard the agent's word on the interrupted command
    assert ar.result(doc)["code"] in (1, 3)
