"""Our programs, run as real processes with a message on stdin: firewall-drop, host-deny
and disable-account, in --dry-run and (host-deny) for real on a file of the test's."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from active_response.programs import SHIPPED_DIR

ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


def run(program, command, data, *argv, env=None):
    message = {"version": 1, "origin": {"name": "t", "module": "test"}, "command": command,
               "parameters": {"extra_args": [], "alert": {"data": data}, "program": program}}  # fmt: skip
    return subprocess.run(
        [str(SHIPPED_DIR / program), *argv], input=json.dumps(message), capture_output=True,
        text=True, env={**ENV, **(env or {})}, timeout=20,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("address", "nft_set", "tool"),
    [("203.0.113.7", "blocked4", "iptables"), ("2001:db8::7", "blocked6", "ip6tables")],
)
def test_firewall_drop_dry_run_prints_the_commands_for_ipv4_and_ipv6(address, nft_set, tool):
    nft = run("firewall-drop", "add", {"srcip": address}, "--dry-run", "--backend", "nft")
    assert nft.returncode == 0, nft.stdout + nft.stderr
    assert "would run: nft -f -" in nft.stdout
    assert f"add element inet agentbus {nft_set} {{ {address} }}" in nft.stdout
    assert "add rule inet agentbus input ip saddr @blocked4 drop" in nft.stdout
    assert nft.stdout.splitlines()[-1] == f"dry run: would block {address} with nft"
    ipt = run("firewall-drop", "add", {"srcip": address}, "--dry-run", "--backend", "iptables")
    assert ipt.returncode == 0
    assert f"would run: {tool} -w -I INPUT -s {address} -j DROP" in ipt.stdout
    assert f"would run: {tool} -w -I FORWARD -s {address} -j DROP" in ipt.stdout
    delete = run("firewall-drop", "delete", {"srcip": address}, "--dry-run", "--backend", "nft")
    assert f"would run: nft delete element inet agentbus {nft_set} {{ {address} }}" in delete.stdout
    delete = run(
        "firewall-drop", "delete", {"srcip": address}, "--dry-run", "--backend", "iptables"
    )
    assert f"would run: {tool} -w -D INPUT -s {address} -j DROP" in delete.stdout


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"srcip": "attacker.example.com"}, "'attacker.example.com' is not an IP address"),
        ({"srcip": "10.0.0.1; reboot"}, "is not an IP address"),
        ({"srcip": "127.0.0.1"}, "loopback"),
        ({"srcip": "::"}, "unspecified"),
        ({"srcip": "192.0.2.50"}, "is protected"),
        ({"srcip": "::ffff:192.0.2.50"}, "is protected"),  # the same address, IPv4-mapped
        ({"user": "x"}, "no address"),
    ],
)
def test_firewall_drop_refuses_what_is_no_address_to_block(data, why):
    env = {"AGENTBUS_AR_PROTECT": "server.example,192.0.2.50,2001:db8:1::/48"}
    for argv in (("--dry-run",), ()):
        done = run("firewall-drop", "add", data, *argv, env=env)
        assert done.returncode == 2 and why in done.stdout and done.stdout.startswith("refused: ")


def test_host_deny_adds_and_removes_its_line(tmp_path):
    deny = tmp_path / "hosts.deny"
    deny.write_text("# local\nsshd: 10.9.9.9")  # no newline at the end
    dry = run("host-deny", "add", {"srcip": "2001:db8::9"}, "--dry-run", "--file", str(deny))
    assert dry.stdout.strip() == f"dry run: would append the line 'ALL: [2001:db8::9]' to {deny}"
    assert deny.read_text() == "# local\nsshd: 10.9.9.9"
    for _ in range(2):  # twice: one line
        assert (
            run("host-deny", "add", {"srcip": "198.51.100.9"}, "--file", str(deny)).returncode == 0
        )
    assert deny.read_text() == "# local\nsshd: 10.9.9.9\nALL: 198.51.100.9\n"
    done = run("host-deny", "delete", {"srcip": "198.51.100.9"}, "--file", str(deny))
    assert done.stdout.strip() == f"allowed 198.51.100.9 again in {deny}"
    assert deny.read_text() == "# local\nsshd: 10.9.9.9\n"
    bad = run("host-deny", "add", {"srcip": "ALL: ALL"}, "--file", str(deny))
    assert bad.returncode == 2 and deny.read_text() == "# local\nsshd: 10.9.9.9\n"


def test_disable_account_never_locks_root_or_the_agents_user():
    dry = run("disable-account", "add", {"dstuser": "nobody"}, "--dry-run")
    assert dry.returncode == 0
    assert dry.stdout.splitlines() == [
        "would run: usermod --lock --expiredate 1 nobody", "dry run: would lock nobody"
    ]  # fmt: skip
    undo = run("disable-account", "delete", {"dstuser": "nobody"}, "--dry-run")
    assert "would run: usermod --unlock --expiredate '' nobody" in undo.stdout
    for user, env in (("root", {}), ("nobody", {"AGENTBUS_AR_AGENT_USER": "nobody"}),
                      ("no-such-user-x", {}), ("-rf", {}), ("a b", {})):  # fmt: skip
        for argv in (("--dry-run",), ()):
            done = run("disable-account", "add", {"dstuser": user}, *argv, env=env)
            assert done.returncode == 2 and done.stdout.startswith("refused: "), (user, done.stdout)


def test_every_shipped_program_is_executable_and_has_a_dry_run():
    for name in ("firewall-drop", "host-deny", "disable-account"):
        path = SHIPPED_DIR / name
        assert os.access(path, os.X_OK)
        assert (
            "--dry-run"
            in subprocess.run([str(path), "--help"], capture_output=True, text=True).stdout
        )
