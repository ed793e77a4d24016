"""SCA: the constructs that current benchmark policies (the CIS ones Wazuh ships) use,
in a policy written for this test and evaluated end to end against a fake host under
tmp_path — each check's result is what the current Wazuh engine gives."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from collectors.sca.assess import assess
from collectors.sca.documents import check_document
from collectors.sca.evaluate import FAILED, NOT_APPLICABLE, PASSED
from collectors.sca.settings import ScaSettings

PY = sys.executable

POLICY = """\
policy:
  id: "bench_constructs"
  file: "bench_constructs.yml"
  name: "Benchmark constructs"
  description: "What current benchmark policies write"
  references:
    - https://example.org/benchmark

requirements:
  name: "A Debian 12 host"
  description: "The fake host says it is Debian 12."
  condition: all
  rules:
    - "f:{root}/etc/os-release -> r:NAME= && r:Debian"
    - "f:{root}/etc/os-release -> r:VERSION= && r:12"

checks:
  - id: 1
    name: "Root cannot log in (CamelCase pattern, lowercase sshd -T output)"
    description: "x"
    impact: "a key this agent does not use"
    compliance:
      pci_dss: ["2.2"]
      nist_800_53: ["AC-6"]
    mitre:
      tactic:
        id: ["TA0008"]
        name: ["Lateral Movement"]
      technique:
        id: ["T1021"]
        name: ["Remote Services"]
      subtechnique:
        id: ["T1021.004"]
        name: ["SSH"]
    condition: all
    rules:
      - 'c:{sshd} -> r:^\\s*PermitRootLogin\\s+no'
      - 'c:{sshd} -> r:^AllowUsers\\s+[\\w@-]+|^AllowGroups\\s+[\\w@-]+'

  - id: 2
    name: "At most 4 tries (a lone negated test: no line may match)"
    condition: all
    rules:
      - 'c:{sshd} -> !r:^\\s*maxauthtries\\s+([5-9]|\\d\\d+)'

  - id: 3
    name: "Password quality in a drop-in directory found by a glob"
    condition: all
    rules:
      - 'd:{root}/etc/pwq.conf.d/* -> r:.+\\.conf$ -> n:maxrepeat\\s*\\t*=\\s*\\t*(\\d+) compare > 0 && n:maxrepeat\\s*\\t*=\\s*\\t*(\\d+) compare <= 3'
      - 'd:{root}/etc/pwq.conf.d/* -> r:.+\\.conf$ -> n:minlen\\s*\\t*=\\s*\\t*(\\d+) compare >= 14'

  - id: 4
    name: "No NOPASSWD in sudoers drop-ins (file names not starting with #)"
    condition: all
    rules:
      - 'not d:{root}/etc/sudoers.d/ -> !r:^# && r:.* -> !r:^\\s*# && r:NOPASSWD'

  - id: 5
    name: "No NOPASSWD in any sudoers drop-in"
    condition: all
    rules:
      - 'not d:{root}/etc/sudoers.d/ -> r:.* -> !r:^# && r:NOPASSWD'

  - id: 6
    name: "sudoers changes are audited (alternation, && on one line)"
    condition: all
    rules:
      - 'd:{root}/etc/audit/rules.d -> r:.+\\.rules$ -> r:^-w && r:/etc/sudoers && r:-p wa && r:-k scope|key=scope'

  - id: 7
    name: "A literal test among regexes is the whole line"
    condition: all
    rules:
      - 'd:{root}/etc/audit/rules.d -> r:.+\\.rules$ -> r:^-a && r:-F perm=x && -F auid!=unset'

  - id: 8
    name: "An extra arrow is part of the content check"
    condition: all
    rules:
      - 'c:{auditctl} -> r:.+\\.rules$ -> r:^-w && r:/etc/sudoers'

  - id: 9
    name: "telnet is not installed (the query fails and prints nothing)"
    condition: all
    rules:
      - 'not c:{silent} -s telnet -> r:install ok installed'

  - id: 10
    name: "tmp.mount is enabled (negated and plain tests together)"
    condition: all
    rules:
      - 'c:{masked} is-enabled tmp.mount -> !r:masked|disabled && r:generated|enabled'

  - id: 11
    name: "No message of the day, or one without the OS name"
    condition: any
    rules:
      - 'not f:{root}/etc/motd'
      - 'not f:{root}/etc/motd -> r:\\\\v|\\\\r|\\\\m|Debian'

  - id: 12
    name: "Password expiration (numeric comparison against a large value)"
    condition: all
    rules:
      - 'f:{root}/etc/login.defs -> n:^\\s*\\t*PASS_MAX_DAYS\\s*\\t*(\\d+) compare <= 365'
      - 'f:{root}/etc/login.defs -> n:^\\s*\\t*PASS_MAX_DAYS\\s*\\t*(\\d+) compare > 0'

  - id: 13
    name: "The shadow file's mode (stat with a quoted format)"
    condition: all
    rules:
      - 'c:stat -Lc "%a %u" {root}/etc/shadow -> r:^640 0$'

  - id: 14
    name: "Audit rules of a missing directory"
    condition: all
    rules:
      - 'd:{root}/etc/nothing.d -> r:.+\\.rules$ -> r:^-w'
"""

EXPECTED = {
    "1": PASSED,
    "2": PASSED,
    "3": PASSED,
    "4": PASSED,
    "5": FAILED,
    "6": PASSED,
    "7": FAILED,
    "8": FAILED,
    "9": PASSED,
    "10": FAILED,
    "11": PASSED,
    "12": FAILED,
    "13": PASSED,
    "14": NOT_APPLICABLE,
}


def script(path: Path, body: str) -> str:
    path.write_text(f"#!{PY}\n{body}")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    etc = root / "etc"
    for d in ("pwq.conf.d/local", "sudoers.d", "audit/rules.d", "bin"):
        (etc / d).mkdir(parents=True)
    (etc / "os-release").write_text('NAME="Debian GNU/Linux"\nVERSION="12 (bookworm)"\n')
    (etc / "pwq.conf.d/local/50-local.conf").write_text("minlen = 14\nmaxrepeat = 3\n")
    (etc / "sudoers.d/10-defaults").write_text("Defaults use_pty\n# alice NOPASSWD: ALL\n")
    (etc / "sudoers.d/#old").write_text("bob ALL=(ALL) NOPASSWD: ALL\n")
    (etc / "audit/rules.d/50-scope.rules").write_text(
        "-w /etc/sudoers -p wa -k scope\n"
        "-a always,exit -F path=/usr/bin/chcon -F perm=x -F auid>=1000 -F auid!=unset\n"
    )
    (etc / "login.defs").write_text("# aging\nPASS_MAX_DAYS\t99999\nPASS_MIN_DAYS 0\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "shadow").chmod(0o640)
    return root


def render(root: Path) -> str:
    bin_ = root / "etc" / "bin"
    return POLICY.format(
        root=root,
        # sshd -T prints its settings in lowercase
        sshd=script(
            bin_ / "sshd-T",
            "print('permitrootlogin no\\nallowusers alice\\nmaxauthtries 4\\nport 22')",
        ),
        auditctl=script(bin_ / "auditctl", "print('-w /etc/sudoers -p wa -k scope')"),
        silent=script(bin_ / "dpkg-query", "import sys; sys.exit(1)"),
        masked=script(bin_ / "systemctl", "import sys; print('masked'); sys.exit(1)"),
    )


def test_a_policy_in_the_benchmark_style_loads_and_reads_as_current_wazuh_reads_it(host):
    path = host / "bench.yml"
    path.write_text(render(host))
    path.chmod(0o600)
    out = assess(ScaSettings(builtin_policies=False, policy_dirs=[]), [str(path)])
    assert out.refused == []
    result = out.results[0]
    assert result.applicable, result.reason
    got = {c.id: o.result for c, o in result.checks}
    assert got == EXPECTED
    reasons = {c.id: o.reason for c, o in result.checks}
    assert reasons["14"] == f"directory missing: {host}/etc/nothing.d"
    # the extra arrow is loaded, with a warning that says how it is read
    assert any("is read as part of it (check 8)" in w for w in result.policy.warnings)
    first = result.checks[0][0]
    assert first.compliance == ("pci_dss:2.2", "nist_800_53:AC-6")
    assert first.mitre == ("tactic:TA0008", "technique:T1021", "subtechnique:T1021.004")
    doc = check_document(result.policy, first, result.checks[0][1])
    assert doc["check"]["name"].startswith("Root cannot log in")
    assert doc["check"]["compliance"] == ["pci_dss:2.2", "nist_800_53:AC-6"]
    assert "mitre" not in doc["check"]  # the index has no field for it


def test_a_change_on_the_fake_host_flips_the_checks_that_read_it(host):
    (host / "etc/sudoers.d/#old").unlink()
    (host / "etc/sudoers.d/10-defaults").write_text("Defaults use_pty\n")
    (host / "etc/login.defs").write_text("PASS_MAX_DAYS 365\n")
    path = host / "bench.yml"
    path.write_text(render(host))
    path.chmod(0o600)
    out = assess(ScaSettings(builtin_policies=False, policy_dirs=[]), [str(path)])
    got = {c.id: o.result for c, o in out.results[0].checks}
    assert got == {**EXPECTED, "5": PASSED, "12": PASSED}
