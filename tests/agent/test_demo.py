"""`agentbus demo`: exits 0, and its summary is what the server really received."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid

import pytest

from refserver.client import AdminClient
from tests.fixtures.run import clean_env


@pytest.mark.timeout(180)
def test_demo_summary_matches_the_server(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "agent.main", "demo", "--keep", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=170,
        env=clean_env(),
    )
    out = result.stdout
    pids = [int(p) for p in re.search(r"stop: kill ([\d ]+)$", out, re.M).group(1).split()]  # type: ignore[union-attr]
    try:
        assert result.returncode == 0, out + result.stderr
        assert "[demo] demo succeeded" in out
        # the reference server refuses v7 ids like a Wazuh 6.0 server: the user sees the switch
        assert "accepts only UUID v4 agent ids" in out
        agent_id = re.search(r"enrolled agent \S+ as (\S+)", out).group(1)  # type: ignore[union-attr]
        assert uuid.UUID(agent_id).version == 4
        # the strict server refused no document of the built-in collectors
        assert re.search(
            r"refused by the index mappings: 0; stateless events swallowed: 0$", out, re.M
        )
        url = re.search(r"--url (http://127\.0\.0\.1:\d+)", out).group(1)  # type: ignore[union-attr]
        admin = AdminClient(url, token_file=tmp_path / "demo" / "server" / "admin.token")
        assert admin.stats()["documents_refused"] == 0
        table = dict(re.findall(r"^  (demo|logcollector|fim|inventory) +(\d+) +\d+$", out, re.M))
        assert set(table) == {"demo", "logcollector", "fim", "inventory"}
        for module, shown in table.items():
            assert admin.count_events(module=module) == int(shown)
        # set-group web: the group's file added a log file, only the logcollector reloaded,
        # and that file's lines arrived
        assert re.search(r"of them from the file group web added: (\d+) of \1$", out, re.M)
        results = {r["message"] for r in admin.results() if r["code"] != 2}
        assert "Groups set to web; 1 group file(s) fetched; reloaded logcollector" in results
        assert "echo: hi" in results
        assert "no executor for module nosuch" in results
        # the active-response executor, a process of its own, answered a dry run of
        # firewall-drop with the commands it would run, read back from the server
        assert len(pids) == 3
        assert re.search(
            r"^  firewall-drop \(dry run\) +code 0: dry run: would block 203\.0\.113\.7 with (nft|iptables)$",
            out,
            re.M,
        )
        assert any(m.startswith("dry run: would block 203.0.113.7 with") for m in results)
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
