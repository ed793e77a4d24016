"""The active-response executor, end to end: commands queued on the reference server run
programs of the allowed directory (and nothing else) and their results come back."""

from __future__ import annotations

import json
import os

import pytest

RECORD = """\
cat >> "$OUT/messages"
echo >> "$OUT/messages"
env > "$OUT/env"
echo "first line"
echo "blocked it: $(date +%s)"
"""


@pytest.mark.timeout(120)
def test_a_queued_command_runs_the_program_with_the_message_and_reports_its_result(ar_env):
    ar = ar_env(env={"SECRET_TOKEN": "s3cret", "AGENTBUS_CONFIG": "/nowhere"})
    ar.program("record", RECORD)
    alert = {"rule": {"id": "5712", "level": 10}, "data": {"srcip": "203.0.113.7"}}
    doc = ar.queue("record", {"command": "add", "extra_args": ["-x"], "alert": alert})
    result = ar.result(doc)
    assert result["code"] == 0, result
    assert result["message"].startswith("blocked it: ")  # the last line
    [message] = [json.loads(line) for line in (ar.out / "messages").read_text().split("\n") if line]
    assert message == {
        "version": 1,
        "origin": {"name": doc, "module": "agentbus-active-response"},
        "command": "add",
        "parameters": {"extra_args": ["-x"], "alert": alert, "program": "record"},
    }
    # nothing of the executor's environment: no secret, no agentbus setting
    env = dict(
        line.split("=", 1) for line in (ar.out / "env").read_text().splitlines() if "=" in line
    )
    assert "SECRET_TOKEN" not in env and "AGENTBUS_CONFIG" not in env
    assert set(env) - {"PWD", "SHLVL", "_", "OLDPWD"} == {
        "PATH", "LC_ALL", "AGENTBUS_AR_PROTECT", "AGENTBUS_AR_AGENT_USER"
    }  # fmt: skip
    assert "127.0.0.1" in env["AGENTBUS_AR_PROTECT"]  # the server's own address
    # counted in the status file
    status = json.loads((ar.state / "status.json").read_text())
    assert status["counters"]["runs"] == 1 and status["programs"] == {"record": 1}


@pytest.mark.timeout(150)
def test_what_may_not_run_ends_with_the_reason(ar_env, tmp_path):
    ar = ar_env(run_timeout="3s", max_output="64KB")
    ar.program("record", RECORD)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ar.program("outside", RECORD, directory=elsewhere)
    ar.program("hangs", "sleep 60\n")
    ar.program("chatty", "head -c 5000000 /dev/zero | tr '\\0' x\necho done\n")
    ar.program("fails", "echo 'no such chain' >&2\nexit 4\n")
    docs = {
        "outside": ar.queue("outside"),
        "slash": ar.queue("a/b"),
        "dotdot": ar.queue("..record"),
        "up": ar.queue("../elsewhere/outside"),
        "hangs": ar.queue("hangs"),
        "chatty": ar.queue("chatty"),
        "fails": ar.queue("fails"),
        "bad_command": ar.queue("record", {"command": "rm -rf /"}),
    }
    got = {what: ar.result(doc) for what, doc in docs.items()}
    assert (got["outside"]["code"], got["outside"]["message"]) == (1, "not found: outside")
    for what in ("slash", "dotdot", "up"):
        assert got[what]["code"] == 1 and got[what]["message"].startswith("not allowed: "), got[
            what
        ]
    assert got["hangs"]["code"] == 3 and got["hangs"]["message"].startswith("hangs timed out after")
    assert (got["chatty"]["code"], got["chatty"]["message"]) == (
        1, "chatty printed more than 65536 bytes: stopped"
    )  # fmt: skip
    assert (got["fails"]["code"], got["fails"]["message"]) == (
        1, "fails failed with code 4: no such chain"
    )  # fmt: skip
    assert got["bad_command"]["code"] == 1 and "args.command" in got["bad_command"]["message"]
    assert not (ar.out / "messages").exists()  # record never ran, outside neither
    # the legitimate path still works, then a world-writable directory refuses everything
    assert ar.command("record")[0] == 0
    os.chmod(ar.programs, 0o777)
    code, message = ar.command("record")
    assert code == 1 and "mode 0777" in message and message.startswith("not allowed: ")
    status = json.loads((ar.state / "status.json").read_text())
    assert status["refused"] == {"bad_name": 3, "not_found": 1, "bad_args": 1, "untrusted": 1}
    assert status["counters"]["timeout"] == 1 and status["counters"]["too_large"] == 1
