"""SCA rule language: parsing, both regex dialects (PCRE2 by default, OS_Regex on request),
and every rule type and operator evaluated against real files, directories, commands and
processes."""

from __future__ import annotations

import os
import re
import sys
import time

import pytest

from collectors.sca.commands import needs_shell, run_command
from collectors.sca.evaluate import FAILED, NOT_APPLICABLE, PASSED, Evaluator, Outcome
from collectors.sca.policy import RuleSet
from collectors.sca.regex import PatternError, compile_regex, translate_osregex
from collectors.sca.rules import RuleError, parse_rule
from collectors.sca.settings import ScaSettings
from tests.fixtures.other_user import needs_root, run_as_nobody

PY = sys.executable


def ev(rule: str, variables: dict[str, str] | None = None, **settings: object) -> Outcome:
    regex_type = settings.pop("regex_type", "pcre2")
    shell_allowed = bool(settings.pop("shell_allowed", False))
    parsed = parse_rule(rule, variables, regex_type)  # type: ignore[arg-type]
    evaluator = Evaluator(ScaSettings(**settings), shell_allowed=shell_allowed)  # type: ignore[arg-type]
    return evaluator.rule(parsed)


def result(rule: str, **kw: object) -> str:
    return ev(rule, **kw).result


# -- OS_Regex -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "line", "matches"),
    [
        (r"^\s*PermitRootLogin\s*\t*no", "PermitRootLogin no", True),
        (r"^\s*PermitRootLogin\s*\t*no", "  PermitRootLogin\tno", True),
        (r"^\s*PermitRootLogin\s*\t*no", "#PermitRootLogin no", False),
        (r"\w+@\w+", "user-1@host_a", True),
        (r"^\d+$", "1234", True),
        (r"^\d+$", "12a4", False),
        (r"Port\.+22", "Port 22", True),  # \. is any character
        (r"a.b", "axb", False),  # a bare . is a literal dot
        (r"a.b", "a.b", True),
        (r"^\p+$", "()*+,-.:;<=>?[]", True),
        (r"\S+\s\S+", "key value", True),
        (r"\S+\s\S+", "key\tvalue", False),  # \s is a space only, not a tab
        (r"^yes|^no", "no", True),
        (r"cost\$5", "cost$5", True),
        (r"end$", "the end", True),
        (r"end$", "endless", False),
        (r"a$b", "a$b", True),  # $ anchors only at the end
        (r"x^y", "x^y", True),  # ^ anchors only at the start
        (r"[a]", "[a]", True),  # brackets are literal
        (r"\(x\)", "(x)", True),
        (r"\W\D", "!x", True),
    ],
)
def test_osregex_means_what_policies_written_for_it_mean(pattern, line, matches):
    assert bool(re.search(translate_osregex(pattern), line)) is matches


# -- parsing --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("x:/etc/passwd", "starts with f:, d:, c:, p: or r:"),
        ("f:relative/path", "absolute paths"),
        ("p:sshd -> x", "no '->'"),
        ("f:$nope", "unknown variable $nope"),
        ("f:/a -> n:(\\d+) compare ~ 3", "unknown comparison"),
        ("f:/a -> n:(\\d+) compare < x", "compares with an integer"),
        ("f:/a -> n:(\\d+) compare < 3 days", "compares with an integer"),
        ("f:/a -> n:\\d+", "REGEX compare OP NUMBER"),
        # the 4.x spellings that current Wazuh no longer reads
        ("f:/a -> n:remember=(\\d+) compare => 5", "operator '=>' is not valid: write '>='"),
        ("f:/a -> n:x=(\\d+) compare =< 5", "operator '=<' is not valid: write '<='"),
        ("f:/a -> n:x=(\\d+) compare = 5", "operator '=' is not valid: write '=='"),
        ("f:/a -> n:x=(\\d+) compare \\!= 1", "write '!='"),
        ("f:/a -> n:x=(\\d+) compare >=5", "unknown comparison '>=5'"),
        ("f:/a -> n:x=(\\d+) compare >=  5", "one space between '>=' and the number"),
        ("f:/a -> n:x=(\\d+) compare>= 5", "with spaces"),
        ("f:/a -> r:(", "does not compile"),
        ("f:/a -> r:*", "does not compile"),  # a 4.x literal star: nothing to repeat
        ("f:/a -> r:a\\Kb", "\\K (reset match start)"),
        ("f:/a -> r:^\\h*Port", "\\h (horizontal space"),
        ("f:/a -> r:[[:space:]]+", "POSIX class [:space:]"),
        ("f:/a -> r:\\x{41}", "\\x{...}"),
        ("f:/a -> r:(?|a|b)", "branch reset"),
        ("f:/a -> r:(?<=ab|c)x", "does not compile"),  # variable-width lookbehind
        ("f:/a -> r:x && !", "empty content check"),
        ("c:echo 'unbalanced -> r:x", "cannot split"),
    ],
)
def test_bad_rules_say_what_is_wrong(rule, message):
    with pytest.raises(RuleError, match=re.escape(message)):
        parse_rule(rule)


def test_variables_are_substituted_and_split_into_paths():
    rule = parse_rule("f:$files -> r:^x", {"$files": "/a,/b"})
    assert rule.targets == ("/a", "/b") and rule.raw == "f:$files -> r:^x"


@pytest.mark.parametrize(
    ("command", "shell"),
    [
        ("sshd -T", False),
        ("grep -E 'a|b;c>d' /etc/x", False),
        ('stat -c "%a %U" /etc/shadow', False),
        ("ps aux | grep x", True),
        ("cat /etc/*.conf", True),
        ("echo $(id)", True),
        ('echo "$HOME"', True),
        ("echo `id`", True),
        ("a && b", True),
        ("ls > /tmp/x", True),
        ("FOO=1 env", True),
        ("ls ~", True),
        # a shell given code to run, even quoted as one argument
        ('sh -c "a | b"', True),
        ("bash -ec 'x'", True),
        ("/bin/sh -c x", True),
        ("dash -xc x", True),
        ("zsh +ec x", True),
        ("fish --command=x", True),
        ("busybox sh -c x", True),
        ("/bin/busybox ash -c x", True),
        ("env sh -c x", True),
        ("/usr/bin/env -i PATH=/bin sh -c x", True),
        ("env -S 'sh -c x'", True),
        ("nice -n 5 bash -c x", True),
        ("timeout 5 /bin/bash -ec x", True),
        ("nohup sh -c x", True),
        ("stdbuf -oL sh -c x", True),
        ("xargs -0 sh -c x", True),
        ("find /etc -name x -exec sh -c 'cat x' '{}' +", True),
        ("timeout 5 sh", True),  # a wrapper given a shell: refused, -c or not
        ("su -c id", True),
        ("watch id", True),
        # a shell given a script file, -c to another program, a wrapper without a shell
        ("sh /usr/lib/check", False),
        ("grep -c x /etc/passwd", False),
        ("timeout 5 sshd -T", False),
        ("env LC_ALL=C sysctl kernel.randomize_va_space", False),
        ("busybox grep x /etc/passwd", False),
    ],
)
def test_shell_syntax_is_recognised_outside_quotes(command, shell):
    assert needs_shell(command) is shell


# -- f: -------------------------------------------------------------------------------------
def test_file_existence_and_contents(tmp_path):
    conf = tmp_path / "sshd_config"
    conf.write_text("# comment\nPort 2222\nMaxAuthTries 3\nPermitRootLogin no\n")
    f = str(conf)
    missing = str(tmp_path / "missing")
    assert result(f"f:{f}") == PASSED
    assert result(f"f:{missing}") == FAILED
    assert result(f"not f:{missing}") == PASSED
    assert result(f"f:{tmp_path}") == FAILED  # a directory is no file
    assert result(f"f:{missing},{f}") == PASSED  # one of the list
    # literal: the whole line
    assert result(f"f:{f} -> Port 2222") == PASSED
    assert result(f"f:{f} -> Port 22") == FAILED
    # regex, negation, conjunction on one line
    assert result(f"f:{f} -> r:^PermitRootLogin\\s+no") == PASSED
    assert result(f"f:{f} -> !r:^# && r:Port") == PASSED
    assert result(f"f:{f} -> !r:^# && r:Protocol") == FAILED
    assert result(f"not f:{f} -> r:^PermitRootLogin\\s+yes") == PASSED
    assert result(f"not f:{f} -> r:^PermitRootLogin") == FAILED


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("<", 4, PASSED),
        ("<", 3, FAILED),
        ("<=", 3, PASSED),
        ("<=", 2, FAILED),
        ("==", 3, PASSED),
        ("==", 4, FAILED),
        ("!=", 4, PASSED),
        ("!=", 3, FAILED),
        (">=", 3, PASSED),
        (">=", 4, FAILED),
        (">", 2, PASSED),
        (">", 3, FAILED),
    ],
)
def test_numeric_comparisons(tmp_path, op, value, expected):
    conf = tmp_path / "c"
    conf.write_text("MaxAuthTries 3\nMaxSessions x\n")
    assert result(f"f:{conf} -> n:^MaxAuthTries\\s+(\\d+) compare {op} {value}") == expected
    # ! negates the test on each line: with one line, the opposite result
    one = tmp_path / "one"
    one.write_text("MaxAuthTries 3\n")
    negated = PASSED if expected == FAILED else FAILED
    assert result(f"f:{one} -> !n:^MaxAuthTries\\s+(\\d+) compare {op} {value}") == negated


def test_numeric_with_no_number_on_the_line_does_not_pass(tmp_path):
    conf = tmp_path / "c"
    conf.write_text("MaxSessions many\n")
    assert result(f"f:{conf} -> n:^MaxSessions\\s+(\\w+) compare >= 0") == FAILED


def test_content_of_a_missing_file_is_not_applicable_with_the_reason(tmp_path):
    o = ev(f"f:{tmp_path / 'nope'} -> r:x")
    assert o == Outcome(NOT_APPLICABLE, f"file missing: {tmp_path / 'nope'}")
    # not leaves not applicable alone: no false "passed"
    assert result(f"not f:{tmp_path / 'nope'} -> r:x") == NOT_APPLICABLE
    # one readable file of the list is enough for an answer
    real = tmp_path / "real"
    real.write_text("y\n")
    assert result(f"f:{tmp_path / 'nope'},{real} -> r:x") == FAILED


@needs_root
def test_content_of_an_unreadable_file_is_not_applicable_not_failed(open_dir):
    secret = open_dir / "secret"
    secret.write_text("PermitRootLogin no\n")
    secret.chmod(0o600)

    def as_nobody(path: str) -> tuple[str, str]:
        o = ev(f"f:{path} -> r:PermitRootLogin")
        return o.result, o.reason

    res, reason = run_as_nobody(as_nobody, str(secret))
    assert res == NOT_APPLICABLE
    assert reason == f"file unreadable: {secret} (permission denied)"


def test_large_files_and_non_files_are_not_applicable(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"x\n" * 1000)
    o = ev(f"f:{big} -> r:x", max_file_bytes=100)
    assert o.result == NOT_APPLICABLE and "max_file_bytes" in o.reason
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    o = ev(f"f:{fifo} -> r:x")  # opened non-blocking: never hangs
    assert o == Outcome(NOT_APPLICABLE, f"not a regular file: {fifo}")


def test_proc_files_are_read_whole(tmp_path):
    assert result("f:/proc/sys/kernel/ostype -> Linux") == PASSED


def test_empty_file_has_no_line_to_pass(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("")
    assert result(f"f:{empty} -> !r:^# && r:.") == FAILED
    assert result(f"f:{empty} -> r:^") == FAILED
    # a negated test alone asks that no line match: none does
    assert result(f"f:{empty} -> !r:^#") == PASSED


def test_a_lone_negated_test_means_no_line_matches(tmp_path):
    conf = tmp_path / "sshd_config"
    conf.write_text("# defaults\nPort 22\nPermitRootLogin no\n")
    f = str(conf)
    # some line ("Port 22") does not match, but one does: the content check fails
    assert result(f"f:{f} -> !r:^PermitRootLogin") == FAILED
    assert result(f"f:{f} -> !r:^PermitRootLogin yes") == PASSED
    assert result(f"f:{f} -> !Port 22") == FAILED  # literal: a line is exactly that
    assert result(f"not f:{f} -> !r:^PermitRootLogin") == PASSED
    # with another test, "!" is a test of one line again
    assert result(f"f:{f} -> !r:^# && r:^Port") == PASSED


# -- PCRE2 (the default) and OS_Regex (on request) ------------------------------------------
def test_pcre2_patterns_match_case_insensitively_like_current_wazuh(tmp_path):
    conf = tmp_path / "c"
    conf.write_text("PermitRootLogin no\nMaxAuthTries 3\n")
    assert result(f"f:{conf} -> r:^permitrootlogin\\s+no$") == PASSED
    assert result(f"f:{conf} -> n:^MAXAUTHTRIES\\s+(\\d+) compare <= 4") == PASSED
    # OS_Regex, on request, is case-sensitive and has its own meanings (. is a dot)
    assert result(f"f:{conf} -> r:^permitrootlogin", regex_type="osregex") == FAILED
    assert result(f"f:{conf} -> r:^Permit.oot", regex_type="osregex") == FAILED
    assert result(f"f:{conf} -> r:^Permit\\.oot", regex_type="osregex") == PASSED
    assert result(f"f:{conf} -> r:^Permit.oot") == PASSED  # PCRE2: . is any character
    assert result(f"f:{conf} -> r:^MaxAuthTries\\s+\\d$") == PASSED


@pytest.mark.parametrize(
    ("pattern", "line", "matches"),
    [
        (r"^\s*\t*PermitRootLogin\s+no", "\tPermitRootLogin no", True),
        (r"^[\w@-]+:[^:]*:0:", "toor:x:0:0", True),
        (r"^a++b", "aab", True),  # possessive quantifiers (Python 3.11)
        (r"^(?>a+)b", "aab", True),  # atomic groups
        (r"(?<=uid=)\d+", "uid=0", True),  # fixed-width lookbehind
        (r"^\d+$", "\u0663", False),  # \d is ASCII, as PCRE2 without UCP
        (r"^\w+$", "\u00e9t\u00e9", False),  # so is \w
        (r"^\s*$", "\u00a0", False),  # and \s
        (r"\bno\b", "PermitRootLogin no", True),
    ],
)
def test_pcre2_means_what_pcre2_means(pattern, line, matches):
    assert bool(compile_regex(pattern).search(line)) is matches


def test_pcre2_only_syntax_is_refused_not_misread():
    for pattern in (r"\Qa.b\E", r"a\Rb", r"\vx", r"(*UTF)x", r"(?1)", r"\p{L}"):
        with pytest.raises(PatternError, match="PCRE2 syntax that Python re does not support"):
            compile_regex(pattern)
    # an escaped paren and a set are not verbs; a class like [:x] alone is no POSIX class
    for pattern in (r"\(*x", r"[(*]", r"[:x]"):
        compile_regex(pattern)


def test_numeric_without_a_group_compares_the_whole_match(tmp_path):
    conf = tmp_path / "c"
    conf.write_text("umask 027\n")
    assert result(f"f:{conf} -> n:\\d+ compare == 27") == PASSED


def test_an_arrow_past_the_last_part_belongs_to_the_content_check(tmp_path):
    rule = parse_rule("c:auditctl -l -> r:x -> r:y")
    assert rule.content is not None and rule.content.text == "r:x -> r:y"
    assert "is read as part of it" in rule.warning
    rule = parse_rule(f"d:{tmp_path} -> r:conf -> r:x -> r:y")
    assert rule.content is not None and rule.content.text == "r:x -> r:y"
    assert parse_rule(f"d:{tmp_path} -> r:conf -> r:x").warning == ""


# -- d: -------------------------------------------------------------------------------------
def test_directories_names_and_contents(tmp_path):
    root = tmp_path / "etc"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "site.conf").write_text("enabled=yes\n")
    (root / "other.txt").write_text("x\n")
    d = str(root)
    assert result(f"d:{d}") == PASSED
    assert result(f"d:{tmp_path / 'nope'}") == FAILED
    assert result(f"not d:{tmp_path / 'nope'}") == PASSED
    assert result(f"d:{root / 'other.txt'}") == FAILED  # a file is no directory
    assert result(f"d:{tmp_path}/*") == PASSED  # globs
    # a file of that name anywhere below (recursive), exact or by regex
    assert result(f"d:{d} -> site.conf") == PASSED
    assert result(f"d:{d} -> site") == FAILED
    assert result(f"d:{d} -> r:^site\\.conf$") == PASSED
    assert result(f"d:{d} -> r:^site.conf$") == PASSED
    assert result(f"d:{d} -> r:^other.conf$") == FAILED
    # the name test is a content check of its own: negation and conjunction
    assert result(f"d:{d} -> !r:^# && r:\\.conf$") == PASSED
    assert result(f"d:{d} -> !r:^site && r:\\.conf$") == FAILED
    # and a line of it
    assert result(f"d:{d} -> r:conf$ -> r:^enabled=yes") == PASSED
    assert result(f"d:{d} -> r:conf$ -> r:^enabled=no") == FAILED
    assert result(f"not d:{d} -> r:conf$ -> r:^enabled=no") == PASSED
    # no file of that name: nothing in it can match (failed); no directory: no answer
    assert result(f"d:{d} -> r:^nothing -> r:x") == FAILED
    assert result(f"not d:{d} -> r:^nothing -> r:x") == PASSED
    o = ev(f"d:{tmp_path / 'nope'} -> r:conf -> r:x")
    assert o == Outcome(NOT_APPLICABLE, f"directory missing: {tmp_path / 'nope'}")
    assert result(f"d:{tmp_path / 'nope'} -> site.conf") == NOT_APPLICABLE
    o = ev(f"d:{d} -> r:conf", max_dir_entries=1)
    assert o.result == NOT_APPLICABLE and "max_dir_entries" in o.reason


# -- c: -------------------------------------------------------------------------------------
def test_command_output(tmp_path):
    script = tmp_path / "show"
    script.write_text("#!/bin/sh\necho 'maxauthtries 6'\necho 'permitrootlogin no'\nexit 3\n")
    script.chmod(0o755)
    s = str(script)
    assert result(f"c:{s} -> r:^permitrootlogin no$") == PASSED
    assert result(f"c:{s} -> n:^maxauthtries (\\d+) compare <= 4") == FAILED
    assert result(f"not c:{s} -> r:^permitrootlogin yes") == PASSED
    # arguments are passed as written, quotes removed, no shell in between
    assert (
        result(f"c:{PY} -c 'import sys; print(sys.argv[1:])' 'a;b' '$HOME' -> ['a;b', '$HOME']")
        == PASSED
    )


def test_commands_run_without_a_shell_and_with_a_minimal_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTBUS_SECRET", "s3cret")
    rule = parse_rule(
        f"c:{PY} -c 'import os,sys; print(sorted(os.environ)); print(sys.argv)' x -> r:x"
    )
    assert not rule.shell and rule.argv[-1] == "x"
    out = run_command(rule.argv, timeout=10, max_output=10000)
    assert "AGENTBUS_SECRET" not in out.stdout and "s3cret" not in out.stdout
    assert "['LC_ALL', 'PATH']" in out.stdout


def test_a_command_that_fails_silently_printed_no_line(tmp_path):
    # grep finding nothing, dpkg-query -s of a package not installed: judged on no output
    silent = f"{PY} -c 'import sys; sys.exit(4)'"
    assert result(f"c:{silent} -> r:install ok installed") == FAILED
    assert result(f"not c:{silent} -> r:install ok installed") == PASSED
    assert result(f"c:{silent} -> !r:.") == PASSED


def test_a_command_without_content_passes_when_it_ran():
    assert result(f"c:{PY} -c 'print(1)'") == PASSED
    assert result("c:/nonexistent/tool") == NOT_APPLICABLE


def test_command_failures_are_not_applicable_with_the_reason(tmp_path):
    o = ev("c:/nonexistent/tool -T -> r:x")
    assert o == Outcome(NOT_APPLICABLE, "command not found: /nonexistent/tool")
    # through a shell, a missing command is the shell's exit 127
    o = ev("c:/nonexistent/tool 2>/dev/null -> r:x", shell_allowed=True)
    assert o.result == NOT_APPLICABLE and "exit 127" in o.reason
    noexec = tmp_path / "noexec"
    noexec.write_text("#!/bin/sh\necho hi\n")
    noexec.chmod(0o644)
    o = ev(f"c:{noexec} -> r:hi")
    assert o.result == NOT_APPLICABLE and "cannot be executed" in o.reason


def test_a_command_that_hangs_is_killed_at_the_timeout(tmp_path):
    marker = tmp_path / "child.pid"
    # The command's child keeps the output open: the whole process group goes.
    code = f"import os,time; open('{marker}','w').write(str(os.getpid())); time.sleep(60)"
    started = time.monotonic()
    o = ev(f'c:{PY} -c "{code}" -> r:x', command_timeout=0.5)
    assert time.monotonic() - started < 10
    assert o.result == NOT_APPLICABLE and o.reason.startswith("command timed out after 0.5s")
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_command_that_prints_too_much_is_killed(tmp_path):
    script = tmp_path / "flood"
    script.write_text(f"#!{PY}\nimport sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n")
    script.chmod(0o755)
    o = ev(f"c:{script} -> r:y", max_command_output=100_000)
    assert o.result == NOT_APPLICABLE and "printed more than 100000 bytes" in o.reason


def test_a_shell_rule_runs_through_sh_only_when_parsed_as_one(tmp_path):
    rule = parse_rule("c:echo one two | tr ' ' '\\n' -> r:^two$")
    assert rule.shell and rule.argv == ()
    assert Evaluator(ScaSettings(), shell_allowed=True).rule(rule).result == PASSED
    # without leave (the default) it does not run
    o = Evaluator(ScaSettings()).rule(rule)
    assert o == Outcome(NOT_APPLICABLE, "needs a shell (not allowed)")


# -- p: -------------------------------------------------------------------------------------
def test_processes_by_name():
    import subprocess

    proc = subprocess.Popen([PY, "-c", "import time; time.sleep(30)"])
    try:
        name = os.path.basename(PY)
        assert result(f"p:{name}") == PASSED
        assert result("p:no-such-process-xyz") == FAILED
        assert result("not p:no-such-process-xyz") == PASSED
    finally:
        proc.kill()
        proc.wait()


# -- conditions -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("condition", "rules", "expected"),
    [
        ("all", ["P", "P"], PASSED),
        ("all", ["P", "F"], FAILED),
        ("all", ["P", "N"], NOT_APPLICABLE),
        ("all", ["N", "F"], FAILED),
        ("any", ["F", "P"], PASSED),
        ("any", ["F", "F"], FAILED),
        ("any", ["F", "N"], NOT_APPLICABLE),
        ("any", ["N", "P"], PASSED),
        ("none", ["F", "F"], PASSED),
        ("none", ["F", "P"], FAILED),
        ("none", ["F", "N"], NOT_APPLICABLE),
        ("none", ["N", "P"], FAILED),
    ],
)
def test_conditions_combine_rule_results(tmp_path, condition, rules, expected):
    (tmp_path / "yes").write_text("y\n")
    make = {
        "P": f"f:{tmp_path / 'yes'}",
        "F": f"f:{tmp_path / 'no'}",
        "N": f"f:{tmp_path / 'no'} -> r:y",
    }
    rs = RuleSet(condition, tuple(parse_rule(make[r]) for r in rules))
    o = Evaluator(ScaSettings()).ruleset(rs)
    assert o.result == expected
    if expected == NOT_APPLICABLE:
        assert o.reason == f"file missing: {tmp_path / 'no'}"


def test_rules_stop_once_the_result_is_known(tmp_path):
    marker = tmp_path / "ran"
    command = parse_rule(f'c:{PY} -c \'open("{marker}", "w"); print(1)\' -> r:1')
    (tmp_path / "f").write_text("")
    found = parse_rule(f"f:{tmp_path / 'f'}")
    assert Evaluator(ScaSettings()).ruleset(RuleSet("any", (found, command))).result == PASSED
    assert not marker.exists()
    assert Evaluator(ScaSettings()).ruleset(RuleSet("all", (found, command))).result == PASSED
    assert marker.exists()  # the same command, needed this time


def test_registry_rules_are_not_applicable_here():
    o = ev("r:HKEY_LOCAL_MACHINE\\System -> x")
    assert o.result == NOT_APPLICABLE and "Windows" in o.reason
