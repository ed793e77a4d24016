"""``agentbus sca run``: one assessment printed for people or scripts, and its exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.common import write_config

POLICY = """\
policy:
  id: cli
  name: "CLI test policy"
  description: "x"
checks:
  - id: 1
    title: "Telnet is off"
    remediation: "Remove telnetd"
    condition: all
    rules: ['f:{root}/services -> r:^telnet off$']
  - id: 2
    title: "Debug is off"
    remediation: "Set debug = off in app.conf"
    condition: all
    rules: ['f:{root}/services -> r:^debug off$']
  - id: 3
    title: "Needs a missing file"
    condition: all
    rules: ['f:{root}/absent -> r:x']
"""


def sca(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "agent.main", "sca", "run", *args]
    if config is not None:
        argv += ["--config", str(config)]
    env = {k: v for k, v in os.environ.items() if k != "AGENTBUS_CONFIG"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    (tmp_path / "services").write_text("telnet off\ndebug on\n")
    path = tmp_path / "cli.yml"
    path.write_text(POLICY.format(root=tmp_path))
    path.chmod(0o600)
    return path


@pytest.fixture
def config(make_config: Any, tmp_path: Path) -> Path:
    # No built-in policy, no policy directory: only what --policy names.
    return write_config(
        make_config(),
        tmp_path / "agentbus.toml",
        collectors={"sca": {"builtin_policies": False, "policy_dirs": []}},
    )


def test_the_summary_shows_score_counts_and_failed_checks_with_remediation(policy, config):
    done = sca("--policy", str(policy), config=config)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"CLI test policy (cli, {policy})" in out
    assert "score 50%: 1 passed, 1 failed, 1 not applicable" in out
    assert "    2  Debug is off\n          remediation: Set debug = off in app.conf" in out
    assert f"3  Needs a missing file: file missing: {policy.parent}/absent" in out
    assert "Telnet is off" not in out  # passed checks are only counted
    assert done.stderr == ""


def test_json_output(policy, config):
    done = sca("--policy", str(policy), "--json", config=config)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["refused"] == []
    (p,) = doc["policies"]
    assert (p["id"], p["score"], p["passed"], p["failed"], p["not_applicable"]) == (
        "cli",
        50,
        1,
        1,
        1,
    )
    assert [c["result"] for c in p["checks"]] == ["passed", "failed", "not applicable"]


def test_exit_0_when_one_policy_ran_even_if_another_was_refused(policy, config, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("policy: {id: bad}\n")
    bad.chmod(0o600)
    done = sca("--policy", str(bad), "--policy", str(policy), config=config)
    assert done.returncode == 0
    assert (
        done.stderr == f"agentbus sca: refused: {bad}: policy: 'name' must be a non-empty string\n"
    )
    assert "CLI test policy" in done.stdout


def test_exit_1_when_it_could_not_run(policy, config, tmp_path):
    policy.chmod(0o606)
    done = sca("--policy", str(policy), config=config)
    assert done.returncode == 1
    assert done.stderr == (
        f"agentbus sca: refused: {policy}: the file is writable by group or others (mode 0606)\n"
    )
    done = sca(config=config)  # nothing configured
    assert done.returncode == 1
    assert done.stderr == "agentbus sca: no policy to assess\n"


def test_exit_2_on_usage_and_configuration_errors(policy, config, tmp_path):
    assert sca("--bogus", config=config).returncode == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[collectors.sca]\nnope = 1\n")
    done = sca(config=bad)
    assert done.returncode == 2 and "collectors.sca.nope: unknown key" in done.stderr


def test_the_configured_policies_by_default(make_config, tmp_path):
    # The packaged policy, as a new user gets it.
    config = write_config(make_config(), tmp_path / "agentbus.toml")
    done = sca(config=config)
    assert done.returncode == 0, done.stderr
    assert "agentbus generic Linux hardening baseline (agentbus_linux_baseline" in done.stdout
    assert "score " in done.stdout


def test_warnings_of_a_loaded_policy_go_to_stderr_and_json_has_the_current_fields(policy, config):
    text = policy.read_text().replace(
        '    title: "Telnet is off"\n',
        '    name: "Telnet is off"\n    compliance:\n      - pci_dss_v4.0: ["2.2.4"]\n'
        '      - cis: ["2.1"]\n      - mitre_techniques: ["T1021"]\n',
    )
    policy.write_text(text)
    done = sca("--policy", str(policy), "--json", config=config)
    assert done.returncode == 0
    assert done.stderr == (
        f"agentbus sca: warning: {policy}: compliance key 'cis' is not supported: ignored"
        " (check 1)\n"
    )
    (p,) = json.loads(done.stdout)["policies"]
    first = p["checks"][0]
    assert (first["name"], first["compliance"], first["mitre"]) == (
        "Telnet is off",
        ["pci_dss:2.2.4"],
        ["technique:T1021"],
    )
    assert p["warnings"] == ["compliance key 'cis' is not supported: ignored (check 1)"]


def test_a_policy_by_path_that_needs_a_shell_runs_with_those_checks_not_applicable(
    policy, config, tmp_path
):
    """The way CIS policies are tried: by path, not trusted for a shell."""
    marker = tmp_path / "ran"
    text = policy.read_text() + (
        "  - id: 4\n"
        '    title: "Through a shell"\n'
        "    condition: all\n"
        f"    rules: ['c:sh -c \"touch {marker}; echo ok\" -> r:ok']\n"
    )
    policy.write_text(text)
    done = sca("--policy", str(policy), config=config)
    assert done.returncode == 0, done.stderr
    reason = "needs a shell (policy not in policy_dirs / allow_shell_commands is off)"
    assert "score 50%: 1 passed, 1 failed, 2 not applicable" in done.stdout
    assert f"4  Through a shell: {reason}" in done.stdout
    assert f"{reason}: not applicable (check 4)" in done.stderr
    assert not marker.exists()
