"""SCA policies: loading only trusted files, both formats (current and 4.x), validation
that names what is wrong, requirements, variables, shell rules, and the policy shipped
with agentbus."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from collectors.sca.assess import assess
from collectors.sca.evaluate import FAILED, NOT_APPLICABLE, PASSED, Outcome
from collectors.sca.policy import BUILTIN_DIR, PolicyError, load_policy, policy_files
from collectors.sca.settings import ScaSettings

#: a policy in the 4.x format: title, compliance as a list of single-key maps
POLICY = """\
policy:
  id: "test_policy"
  file: "test_policy.yml"
  name: "Test policy"
  description: "For the tests"
  references: ["https://example.org/a"]
requirements:
  title: "the directory is there"
  description: "x"
  condition: all
  rules:
    - "f:{root}/present"
variables:
  $conf: {root}/missing.conf,{root}/app.conf
checks:
  - id: 1
    title: "Port is set to 22"
    rationale: "Scanners try 22"
    remediation: "Set Port"
    compliance:
      - pci_dss: ["2.2.4", "1.1"]
      - nist_800_53: "CM.1"
    references: ["https://example.org/b"]
    condition: all
    rules:
      - 'f:$conf -> !r:^# && r:Port\\s*\\t*22$'
  - id: "two"
    title: "Debug is off"
    condition: none
    rules:
      - 'f:$conf -> r:^debug = on'
  - id: 3
    title: "Log file"
    condition: any
    rules:
      - 'f:{root}/nope.log -> r:x'
"""


#: the same policy in the current format: name, compliance an object, mitre apart
POLICY_CURRENT = """\
policy:
  id: "test_policy"
  file: "test_policy.yml"
  name: "Test policy"
  description: "For the tests"
  references: ["https://example.org/a"]
requirements:
  name: "the directory is there"
  description: "x"
  condition: all
  rules:
    - "f:{root}/present"
variables:
  $conf: {root}/missing.conf,{root}/app.conf
checks:
  - id: 1
    name: "Port is set to 22"
    rationale: "Scanners try 22"
    remediation: "Set Port"
    compliance:
      pci_dss: ["2.2.4", "1.1"]
      nist_800_53: ["CM.1"]
    mitre:
      tactic:
        id: ["TA0008"]
        name: ["Lateral Movement"]
      technique:
        id: ["T1021"]
        name: ["Remote Services"]
    references: ["https://example.org/b"]
    condition: all
    rules:
      - 'f:$conf -> !r:^# && r:Port\\s*\\t*22$'
  - id: "two"
    name: "Debug is off"
    condition: none
    rules:
      - 'f:$conf -> r:^debug = on'
  - id: 3
    name: "Log file"
    condition: any
    rules:
      - 'f:{root}/nope.log -> r:x'
"""
FORMATS = pytest.mark.parametrize("text", [POLICY_CURRENT, POLICY], ids=["current", "4.x"])


def write(path: Path, text: str, mode: int = 0o600) -> str:
    path.write_text(textwrap.dedent(text))
    path.chmod(mode)
    return str(path)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "present").write_text("")
    (tmp_path / "app.conf").write_text("# Port 22\nPort 22\ndebug = off\n")
    return tmp_path


def settings(**kw: object) -> ScaSettings:
    base: dict[str, object] = {"builtin_policies": False, "policy_dirs": []}
    return ScaSettings(**{**base, **kw})  # type: ignore[arg-type]


@FORMATS
def test_a_policy_is_loaded_and_evaluated(root, text):
    path = write(root / "p.yml", text.format(root=root))
    policy = load_policy(path, settings())
    assert (policy.id, policy.file, policy.references) == (
        "test_policy",
        "test_policy.yml",
        ("https://example.org/a",),
    )
    first = policy.checks[0]
    assert first.id == "1" and first.compliance == (
        "pci_dss:2.2.4",
        "pci_dss:1.1",
        "nist_800_53:CM.1",
    )
    result = assess(settings(policies=[path])).results[0]
    assert result.applicable
    got = {c.id: (o.result, o.reason) for c, o in result.checks}
    assert got == {
        "1": (PASSED, ""),  # through the variable: the missing file of the list is skipped
        "two": (PASSED, ""),
        "3": (NOT_APPLICABLE, f"file missing: {root}/nope.log"),
    }
    assert result.score == 100
    assert [c.name for c in policy.checks] == ["Port is set to 22", "Debug is off", "Log file"]
    assert policy.warnings == ()


@FORMATS
def test_a_policy_whose_requirements_do_not_hold_is_not_evaluated(root, text):
    (root / "present").unlink()
    path = write(root / "p.yml", text.format(root=root))
    result = assess(settings(policies=[path])).results[0]
    assert not result.applicable and result.checks == []
    assert result.reason == "requirements failed (the directory is there)"


def test_a_change_on_the_host_changes_the_result(root):
    path = write(root / "p.yml", POLICY.format(root=root))
    (root / "app.conf").write_text("Port 2222\ndebug = on\n")
    result = assess(settings(policies=[path])).results[0]
    got = {c.id: o.result for c, o in result.checks}
    assert got == {"1": FAILED, "two": FAILED, "3": NOT_APPLICABLE}
    assert result.score == 0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace('  id: "test_policy"\n', ""),
            "policy: 'id' must be a non-empty string",
        ),
        (lambda t: t.replace("condition: none", "condition: most"), "check two: condition must be"),
        (lambda t: t.replace("$conf ->", "$other ->", 1), "check 1: rule 'f:$other -> "),
        (lambda t: t.replace('id: "two"', "id: 1"), "check 1: duplicate id"),
        (
            lambda t: t.replace('title: "Log file"', "title: ''"),
            "check 3: 'name' (or the 4.x 'title') must be a non-empty string",
        ),
        (
            lambda t: t.replace('title: "Log file"', "rationale: x"),
            "check 3: 'name' (or the 4.x 'title') must be a non-empty string",
        ),
        (
            lambda t: t.replace("r:^debug = on", "r:^debug\\K = on"),
            "check two: rule 'f:$conf -> r:^debug\\K = on': regex '^debug\\K = on': PCRE2"
            " syntax that Python re does not support: \\K",
        ),
        (
            lambda t: t.replace("r:^debug = on", "n:^debug=(\\\\d+) compare => 1"),
            "check two: rule 'f:$conf -> n:^debug=(\\\\d+) compare => 1': n: operator '=>'"
            " is not valid: write '>='",
        ),
        (
            lambda t: t.replace('id: "two"', 'id: "two"\n    regex_type: posix'),
            "check two: regex_type",
        ),
        (lambda t: t.replace('- nist_800_53: "CM.1"', '- "CM.1"'), "check 1: 'compliance' must be"),
        (lambda t: t.replace("f:{root}/nope.log", "q:/x"), "check 3: rule 'q:/x -> r:x'"),
        (lambda t: t.replace("checks:", "checkz:"), "checks: must be a non-empty list"),
        (
            lambda t: t.replace("  condition: all\n  rules:", "  condition: al\n  rules:", 1),
            "requirements: condition must be",
        ),
        (lambda t: t + "  - [unbalanced\n", "not valid YAML"),
        (lambda t: "just text", "policy file: expected a mapping"),
    ],
)
def test_an_invalid_policy_is_refused_with_one_line_naming_the_check(root, edit, message):
    path = write(root / "p.yml", edit(POLICY).format(root=root))
    with pytest.raises(PolicyError) as err:
        load_policy(path, settings())
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_a_bad_policy_is_refused_and_the_others_still_run(root):
    good = write(root / "good.yml", POLICY.format(root=root))
    bad = write(root / "bad.yml", "policy: [1]\n")
    out = assess(settings(policies=[bad, good]))
    assert [r.policy.id for r in out.results] == ["test_policy"]
    assert out.refused == [(bad, f"{bad}: policy: missing or not a mapping")]


def test_a_second_policy_with_the_same_id_is_refused(root):
    a = write(root / "a.yml", POLICY.format(root=root))
    b = write(root / "b.yml", POLICY.format(root=root))
    out = assess(settings(policies=[a, b]))
    assert len(out.results) == 1
    assert out.refused == [(b, f"{b}: policy: id 'test_policy' is already the id of {a}")]


# -- trust ----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [0o602, 0o620, 0o666])
def test_a_policy_writable_by_others_is_refused(root, mode):
    path = write(root / "p.yml", POLICY.format(root=root), mode)
    with pytest.raises(PolicyError, match=r"the file is writable by group or others \(mode 06"):
        load_policy(path, settings())


def test_a_policy_in_a_directory_writable_by_others_is_refused(root):
    shared = root / "shared"
    shared.mkdir()
    path = write(shared / "p.yml", POLICY.format(root=root))
    shared.chmod(0o777)  # anyone could swap the file
    with pytest.raises(PolicyError, match=f"directory {shared} is writable by group or others"):
        load_policy(path, settings())
    shared.chmod(0o1777)  # sticky, like /tmp: others cannot replace our file
    assert load_policy(path, settings()).id == "test_policy"


def test_a_policy_owned_by_another_user_is_refused(root):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file away")
    path = write(root / "p.yml", POLICY.format(root=root))
    os.chown(path, 65534, 65534)
    with pytest.raises(PolicyError, match="owned by uid 65534, not root or the agent's user"):
        load_policy(path, settings())


def test_a_policy_that_is_no_regular_file_or_too_big_is_refused(root):
    os.mkfifo(root / "fifo.yml")
    with pytest.raises(PolicyError, match="not a regular file"):
        load_policy(str(root / "fifo.yml"), settings())
    path = write(root / "p.yml", POLICY.format(root=root))
    with pytest.raises(PolicyError, match="larger than max_policy_bytes"):
        load_policy(path, settings(max_policy_bytes=100))
    with pytest.raises(PolicyError, match="no such file"):
        load_policy(str(root / "absent.yml"), settings())


SHELL_POLICY = """\
policy: {{id: shelly, name: Shelly, description: shells}}
checks:
  - id: 1
    name: quoted pipeline
    condition: all
    rules:
      - 'c:sh -c "touch {m}/1 && echo ran | tr a-z A-Z" -> r:^RAN$'
  - id: 2
    name: bash with an option cluster
    condition: all
    rules:
      - 'c:bash -ec "touch {m}/2; echo ran" -> r:^ran$'
  - id: 3
    name: through env
    condition: all
    rules:
      - 'c:env sh -c "touch {m}/3; echo ran" -> r:^ran$'
  - id: 4
    name: by path
    condition: all
    rules:
      - 'c:/bin/sh -c "touch {m}/4; echo ran" -> r:^ran$'
  - id: 5
    name: a busybox applet
    condition: all
    rules:
      - 'c:{bin}/busybox sh -c "touch {m}/5; echo ran" -> r:^ran$'
  - id: 6
    name: shell syntax
    condition: all
    rules:
      - "c:touch {m}/6 && echo ran -> r:^ran$"
  - id: 7
    name: no shell needed
    condition: all
    rules:
      - "c:echo ok -> r:^ok$"
"""
SHELL_CHECKS = ("1", "2", "3", "4", "5", "6")


@pytest.mark.parametrize(
    ("trusted_dir", "allow", "reason"),
    [
        (True, False, "needs a shell (allow_shell_commands is off)"),
        (False, True, "needs a shell (policy not in policy_dirs)"),
        (False, False, "needs a shell (policy not in policy_dirs / allow_shell_commands is off)"),
    ],
)
def test_shell_rules_do_not_run_unless_trusted_and_allowed(root, trusted_dir, allow, reason):
    """A policy that may not use a shell still loads and runs; each rule that would start
    one — quoted as one argument or not — is not applicable and does not run."""
    marks, bindir, trusted = root / "marks", root / "bin", root / "trusted"
    for d in (marks, bindir, trusted):
        d.mkdir()
    write(bindir / "busybox", '#!/bin/sh\nshift\nexec /bin/sh "$@"\n', 0o700)  # an applet
    text = SHELL_POLICY.format(m=marks, bin=bindir)
    path = write((trusted if trusted_dir else root) / "shell.yml", text)
    config = settings(policy_dirs=[str(trusted)], allow_shell_commands=allow)
    policy = load_policy(path, config)
    assert not policy.shell_allowed
    assert policy.warnings == (f"{reason}: not applicable (check 1, 2, 3, 4, 5 and 1 more)",)
    out = assess(config, [path])
    assert out.refused == []
    results = {c.id: o for c, o in out.results[0].checks}
    assert {cid: results[cid] for cid in SHELL_CHECKS} == {
        cid: Outcome(NOT_APPLICABLE, reason) for cid in SHELL_CHECKS
    }
    assert results["7"].result == PASSED  # the rest of the policy runs
    assert list(marks.iterdir()) == []  # no shell ran


def test_shell_rules_run_from_a_trusted_directory_with_the_key_on(root):
    marks, bindir, trusted = root / "marks", root / "bin", root / "trusted"
    for d in (marks, bindir, trusted):
        d.mkdir()
    write(bindir / "busybox", '#!/bin/sh\nshift\nexec /bin/sh "$@"\n', 0o700)
    write(trusted / "shell.yml", SHELL_POLICY.format(m=marks, bin=bindir))
    out = assess(settings(policy_dirs=[str(trusted)], allow_shell_commands=True))
    assert out.results[0].policy.shell_allowed and out.results[0].policy.warnings == ()
    assert [(c.id, o.result) for c, o in out.results[0].checks] == [
        (cid, PASSED) for cid in (*SHELL_CHECKS, "7")
    ]
    assert sorted(p.name for p in marks.iterdir()) == list(SHELL_CHECKS)


def test_requirements_that_need_a_shell_make_an_untrusted_policy_not_applicable(root):
    marker = root / "ran"
    text = f"""\
    policy: {{id: req, name: Req, description: shell in requirements}}
    requirements:
      name: a shell
      condition: all
      rules: ['c:sh -c "touch {marker}; echo yes" -> r:yes']
    checks:
      - {{id: 1, name: one, condition: all, rules: ['f:{root}/present']}}
    """
    path = write(root / "req.yml", text)
    result = assess(settings(), [path]).results[0]
    assert not result.applicable and "needs a shell" in result.reason
    assert not marker.exists()


def test_policy_dirs_are_scanned_for_yaml_files(root):
    d = root / "dir"
    d.mkdir()
    write(d / "b.yaml", POLICY.format(root=root))
    write(d / "a.yml", POLICY.format(root=root).replace("test_policy", "other"))
    write(d / "notes.txt", "not a policy")
    found = policy_files(settings(policy_dirs=[str(d), str(root / "absent")]))
    assert found == [str(d / "a.yml"), str(d / "b.yaml")]
    assert policy_files(ScaSettings(policy_dirs=[]))[0].startswith(str(BUILTIN_DIR))


# -- the policy shipped with agentbus ---------------------------------------------------------
def test_the_builtin_policy_is_valid_and_evaluates_here():
    files = policy_files(ScaSettings(policy_dirs=[]))
    assert len(files) == 1
    policy = load_policy(files[0], ScaSettings())
    assert policy.id == "agentbus_linux_baseline"
    # written in the current format: name (no title), no regex_type, nothing ignored
    text = Path(files[0]).read_text()
    assert "title:" not in text and "regex_type" not in text and policy.warnings == ()
    assert policy.requirements_name and all(c.name for c in policy.checks)
    assert 10 <= len(policy.checks) <= 20
    assert all(c.remediation and c.rationale and c.description for c in policy.checks)
    assert not any(r.shell for c in policy.checks for r in c.rules)  # runs without a shell
    result = assess(ScaSettings(policy_dirs=[])).results[0]
    assert result.applicable  # this is Linux
    results = {c.id: o for c, o in result.checks}
    assert results["10008"].result == PASSED  # root is the only uid 0 here
    assert all(o.reason for o in results.values() if o.result == NOT_APPLICABLE)
    assert result.score is not None


# -- the two formats --------------------------------------------------------------------------
def test_name_wins_over_the_older_title(root):
    text = POLICY_CURRENT.replace('name: "Debug is off"', 'name: "Debug is off"\n    title: "old"')
    path = write(root / "p.yml", text.format(root=root))
    policy = load_policy(path, settings())
    assert policy.checks[1].name == "Debug is off"
    assert policy.requirements_name == "the directory is there"


def test_compliance_in_both_shapes_becomes_the_same_keywords(root):
    current = load_policy(write(root / "a.yml", POLICY_CURRENT.format(root=root)), settings())
    old = load_policy(write(root / "b.yml", POLICY.format(root=root)), settings())
    assert current.checks[0].compliance == old.checks[0].compliance
    assert current.checks[0].mitre == ("tactic:TA0008", "technique:T1021")


def test_4x_compliance_keys_are_normalized_and_the_others_ignored_with_a_warning(root):
    text = POLICY.replace(
        """      - pci_dss: ["2.2.4", "1.1"]
      - nist_800_53: "CM.1"
""",
        """      - cis: ["5.2.1"]
      - cis_csc_v8: ["4.1"]
      - pci_dss_v4.0: ["2.2.6"]
      - pci_dss_v3.2.1: ["2.2"]
      - nist_sp_800-53: ["CM-6"]
      - iso_27001-2013: ["A.9.4.1"]
      - soc_2: ["CC6.1"]
      - mitre_tactics: ["TA0005"]
      - mitre_techniques: ["T1036"]
""",
    )
    policy = load_policy(write(root / "p.yml", text.format(root=root)), settings())
    check = policy.checks[0]
    assert check.compliance == (
        "pci_dss:2.2.6",
        "pci_dss:2.2",
        "nist_800_53:CM-6",
        "iso_27001:A.9.4.1",
        "tsc:CC6.1",
    )
    assert check.mitre == ("tactic:TA0005", "technique:T1036")
    assert policy.warnings == (
        "compliance key 'cis' is not supported: ignored (check 1)",
        "compliance key 'cis_csc_v8' is not supported: ignored (check 1)",
    )


def test_unsupported_keys_of_the_current_format_are_ignored_with_a_warning(root):
    text = POLICY_CURRENT.replace(
        '      nist_800_53: ["CM.1"]\n', '      nist_800_53: ["CM.1"]\n      cis: ["1.1"]\n'
    ).replace("      technique:\n", "      mitigation: [M1042]\n      technique:\n")
    policy = load_policy(write(root / "p.yml", text.format(root=root)), settings())
    assert policy.checks[0].compliance == ("pci_dss:2.2.4", "pci_dss:1.1", "nist_800_53:CM.1")
    assert policy.warnings == (
        "compliance key 'cis' is not supported: ignored (check 1)",
        "mitre key 'mitigation' is not supported: ignored (check 1)",
    )


def test_regex_type_osregex_is_an_opt_in_per_policy_or_check(root):
    # "\\." is any character in OS_Regex, a dot in PCRE2; "Port.22" the other way round
    (root / "app.conf").write_text("Port 22\n")
    text = POLICY_CURRENT.replace(
        "'f:$conf -> !r:^# && r:Port\\s*\\t*22$'", "'f:$conf -> r:^Port\\.22'"
    )
    pcre2 = write(root / "a.yml", text.format(root=root))
    results = assess(settings(policies=[pcre2])).results[0].checks
    assert results[0][1].result == FAILED
    osregex = text.replace(
        '  references: ["https://example.org/a"]\n', "  regex_type: osregex\n", 1
    )
    os_path = write(root / "b.yml", osregex.replace("test_policy", "os").format(root=root))
    assert assess(settings(policies=[os_path])).results[0].checks[0][1].result == PASSED
    per_check = text.replace(
        '    name: "Port is set to 22"\n', "    name: x\n    regex_type: osregex\n"
    )
    one = write(root / "c.yml", per_check.replace("test_policy", "one").format(root=root))
    assert assess(settings(policies=[one])).results[0].checks[0][1].result == PASSED
