"""`agentbus demo`: every row of its summary is known before it runs, ends with a verdict that
matches what the server really holds, and the three commands it suggests work as pasted."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections import Counter

import pytest

from agent.demo import verdict
from refserver.client import AdminClient
from tests.fixtures.common import wait_for
from tests.fixtures.run import clean_env

ROW = re.compile(r"^  (.+?) +(\d+) +(\d+)  (.+)$", re.M)


def test_verdicts_say_ok_or_what_is_wrong():
    assert verdict(5, 5) == "ok"
    assert verdict(47, 50) == "MISSING 3 of 50"
    assert verdict(0, 1) == "MISSING 1 of 1"
    assert verdict(9, 1) == "8 MORE THAN EXPECTED"


@pytest.mark.timeout(180)
def test_demo_summary_matches_the_server(tmp_path):
    base = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "agent.main", "demo", "--keep", "--dir", str(base)],
        capture_output=True,
        text=True,
        timeout=170,
        env=clean_env(),
    )
    out = result.stdout
    pids = [int(p) for p in re.search(r"stop: kill ([\d ]+)$", out, re.M).group(1).split()]  # type: ignore[union-attr]
    try:
        assert result.returncode == 0, out + result.stderr
        assert "[demo] demo succeeded: every line above is ok" in out
        # the reference server refuses v7 ids like a Wazuh 6.0 server: the user sees the switch
        assert "accepts only UUID v4 agent ids" in out
        agent_id = re.search(r"enrolled agent \S+ as (\S+)", out).group(1)  # type: ignore[union-attr]
        assert uuid.UUID(agent_id).version == 4
        url = re.search(r"--url (http://127\.0\.0\.1:\d+)", out).group(1)  # type: ignore[union-attr]
        admin = AdminClient(url, token_file=base / "server" / "admin.token")

        # what each row expects is printed before the agent starts, and never changes
        plan_text = out.split("the server must receive")[1].split("[demo] starting the agent")[0]
        plan = {label: int(n) for n, label in re.findall(r"^ +(\d+)  (.+)$", plan_text, re.M)}
        table_text = out.split("what the server received")[1].split("\nsca:")[0]
        table = {
            label: (int(got), int(exp), mark) for label, got, exp, mark in ROW.findall(table_text)
        }
        assert {label: exp for label, (_, exp, _) in table.items() if label in plan} == plan
        assert all(mark == "ok" and got == exp for got, exp, mark in table.values()), table_text
        # the live progress line counts against those same numbers, from the first line on
        progress = [line for line in out.splitlines() if line.startswith("  demo ")]
        assert progress
        for line in progress:
            expected = dict(re.findall(r"(\S+) \d+/(\d+)", line))
            assert expected["demo"] == "2000" and expected["fim~"] == "1", line
            assert expected["inventory"] == str(
                plan["inventory documents (system, hardware, networks)"]
            )

        # every number is what the server holds
        assert (
            table["events of the example collector"][0] == admin.count_events(module="demo") == 2000
        )
        fim = Counter(e["operation"] for e in admin.events(module="fim", limit=1000))
        assert fim == {"create": 2, "update": 1, "delete": 1}
        assert table["fim: files modified (hosts)"][:2] == (1, 1)
        inventory = table["inventory documents (system, hardware, networks)"][0]
        documents = [d for d in admin.documents() if d["agent_id"] == agent_id]
        assert (
            inventory
            == sum(1 for d in documents if d["index"].startswith("wazuh-states-inventory-"))
            >= 3
        )
        logs = admin.events(module="logcollector", limit=100_000)
        group = [e for e in logs if "GET /demo-group" in e["data"]["event"]["original"]]
        assert table["lines of the file group web adds"][0] == len(group) == 50
        sca = [d for d in admin.documents(index="wazuh-states-sca") if d["agent_id"] == agent_id]
        assert table["sca documents (one per check of the baseline)"][0] == len(sca) > 0
        stats = admin.stats()
        assert stats["documents_refused"] == 0 and stats["stateless_swallowed"] == 0
        assert table["documents refused by the index mappings"] == (0, 0, "ok")

        # SCA: the score and a failed check with its remediation, as the server holds them
        results = Counter(d["data"]["check"]["result"] for d in sca)
        score = round(100 * results["passed"] / (results["passed"] + results["failed"]))
        assert (
            f"agentbus_linux_baseline: score {score}% ({results['passed']} passed,"
            f" {results['failed']} failed, {results['not applicable']} not applicable)"
        ) in out
        failed = {
            d["data"]["check"]["id"]: d["data"]["check"]
            for d in sca
            if d["data"]["check"]["result"] == "failed"
        }
        if failed:
            shown = re.search(r"^  a failed check: (\S+) (.+)\n    remediation: (.+)$", out, re.M)
            assert shown, out
            check = failed[shown.group(1)]
            assert (shown.group(2), shown.group(3)) == (check["name"], check["remediation"])

        # the journal: a row where journald runs, else one line saying why it is off
        if os.path.isdir("/run/systemd/journal"):
            assert re.search(r"^  journal entries of agentbus-demo-\d+ +20 +20  ok$", out, re.M)
        else:
            assert re.search(
                r"^journal source: off: journald does not run \(no /run/systemd/journal\); so no journal row$",
                out,
                re.M,
            )

        # the commands: each one's expected code, and a verdict that matches the server
        answers = {r["message"]: r["code"] for r in admin.results() if r["code"] != 2}
        assert answers["echo: hi"] == 0
        assert answers["no executor for module nosuch"] == 1
        assert re.search(
            r"^  firewall-drop \(dry run\) +code 0 \(expected 0\)  ok: dry run: would block 203\.0\.113\.7 with (nft|iptables)$",
            out,
            re.M,
        )
        assert re.search(
            r"^  set-group web +code 0 \(expected 0\)  ok: Groups set to web; 1 group file\(s\) fetched; reloaded logcollector",
            out,
            re.M,
        )
        assert len(pids) == 3

        # the three commands to try next work as pasted into a shell, and so do the two
        # that read back what they did
        tries = out.split("Try next:\n")[1].split("\nthen read back")[0].splitlines()
        assert [t.split()[1] for t in tries] == ["status", "send", "server"]
        reads = (
            out.split("then read back what the server got:\n")[1].split("\nmore:")[0].splitlines()
        )

        def shell(line: str) -> str:
            ran = subprocess.run(
                line, shell=True, capture_output=True, text=True, timeout=30, env=clean_env()
            )
            assert ran.returncode == 0, (line, ran.stdout, ran.stderr)
            return ran.stdout

        def blocks() -> int:
            return sum(
                1 for r in admin.results() if r["message"].startswith("dry run: would block")
            )

        for line in tries:
            shell(line)
        # the event sent is the one `server events --wait` prints
        [event] = [json.loads(line) for line in shell(reads[0]).splitlines()]
        assert (event["module"], event["agent_id"]) == ("myapp", agent_id)
        assert event["data"] == {"msg": "hi from you"}
        # the queued firewall-drop dry run came back from the agent: a second such result
        wait_for(lambda: blocks() == 2, timeout=30)
        assert shell(reads[1]).count("dry run: would block 203.0.113.7") == 2
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def test_journal_entries_use_journalds_native_protocol(tmp_path, monkeypatch):
    """Where journald runs, the demo writes its entries to journald's native socket: one
    datagram per entry, FIELD=value lines, under the demo's own identifier (this host may
    have no journald: a datagram socket of our own stands in for it)."""
    import socket

    import agent.demo as demo

    path = tmp_path / "socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as journald:
        journald.bind(str(path))
        monkeypatch.setattr(demo, "JOURNAL_SOCKET", str(path))
        demo._write_journal("agentbus-demo-7", 3)
        entries = [journald.recv(4096).decode() for _ in range(3)]
    assert (
        entries[2]
        == "MESSAGE=demo journal entry seq=2\nSYSLOG_IDENTIFIER=agentbus-demo-7\nPRIORITY=6\n"
    )
