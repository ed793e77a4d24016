"""Evaluating rules, checks and policies on this host.

A rule is ``passed``, ``failed`` or ``not applicable`` — the last when the agent cannot
tell: a file missing or unreadable for a content check, a command that could not run,
timed out or printed too much, a directory it cannot list. ``not`` swaps passed and
failed and leaves not applicable alone. A check combines its rules by its condition:

- ``all``: failed if one rule failed; else not applicable if one was; else passed.
- ``any``: passed if one rule passed; else not applicable if one was; else failed.
- ``none``: failed if one rule passed; else not applicable if one was; else passed.

A command is judged on what it printed, whatever its exit status: one that exits non-zero
with no output (``grep`` finding nothing, ``dpkg-query -s`` of a package not installed)
printed no line, as the Wazuh engines read it; one that could not be started, timed out
or printed too much — or, through a shell, was not found (exit 126, 127) — is not
applicable. A command that needs a shell is not run at all unless the policy may use one
(``Policy.shell_allowed``): it is not applicable, "needs a shell (...)" saying why. A
``d:`` rule that looks for files by name finds none: failed (not applicable only when a
directory is missing or unreadable).

Rules are evaluated in order and stop as soon as the result is known. Within one
evaluation a command's output and the process list are read once. A policy is evaluated
only when its ``requirements`` (a rule set like a check's) pass on this host.
"""

from __future__ import annotations

import glob
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from collectors.sca.commands import Output, run_command
from collectors.sca.policy import NO_SHELL, Check, Policy, RuleSet
from collectors.sca.rules import Content, Rule
from collectors.sca.settings import ScaSettings

Result = Literal["passed", "failed", "not applicable"]
PASSED: Result = "passed"
FAILED: Result = "failed"
NOT_APPLICABLE: Result = "not applicable"
#: longest reason kept (a check may gather several)
MAX_REASON = 1024


class Interrupted(Exception):
    """The evaluation was asked to stop."""


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    reason: str = ""


@dataclass(slots=True)
class PolicyResult:
    policy: Policy
    #: False: the requirements do not hold here (``reason`` says which)
    applicable: bool
    reason: str = ""
    checks: list[tuple[Check, Outcome]] = field(default_factory=list)

    def count(self, result: Result) -> int:
        return sum(1 for _, o in self.checks if o.result == result)

    @property
    def score(self) -> int | None:
        """Percentage of passed among passed and failed; None when there is neither."""
        passed, failed = self.count(PASSED), self.count(FAILED)
        if passed + failed == 0:
            return None
        return round(100 * passed / (passed + failed))


class _ReadProblem(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class Evaluator:
    """Evaluates policies with the limits of ``settings``; one instance per evaluation."""

    def __init__(
        self,
        settings: ScaSettings,
        stop_event: threading.Event | None = None,
        *,
        shell_allowed: bool = False,
    ) -> None:
        self.settings = settings
        self.stop_event = stop_event or threading.Event()
        #: why a rule that needs a shell may not run one ("" when it may); set per policy
        self._no_shell = "" if shell_allowed else NO_SHELL
        self._outputs: dict[tuple[bool, str], Output] = {}
        self._processes: set[str] | None = None

    # -- policies and checks ---------------------------------------------------------------
    def policy(self, policy: Policy) -> PolicyResult:
        self._no_shell = "" if policy.shell_allowed else policy.no_shell_reason or NO_SHELL
        if policy.requirements is not None:
            req = self.ruleset(policy.requirements)
            if req.result != PASSED:
                why = f"requirements {req.result}"
                if policy.requirements_name:
                    why += f" ({policy.requirements_name})"
                if req.reason:
                    why += f": {req.reason}"
                return PolicyResult(policy, False, why)
        result = PolicyResult(policy, True)
        for check in policy.checks:
            if self.stop_event.is_set():
                raise Interrupted()
            result.checks.append((check, self.ruleset(check.ruleset)))
        return result

    def ruleset(self, rs: RuleSet) -> Outcome:
        reasons: list[str] = []
        for rule in rs.rules:
            o = self.rule(rule)
            if o.result == NOT_APPLICABLE:
                if o.reason and o.reason not in reasons:
                    reasons.append(o.reason)
                continue
            if rs.condition == "all" and o.result == FAILED:
                return Outcome(FAILED)
            if rs.condition == "any" and o.result == PASSED:
                return Outcome(PASSED)
            if rs.condition == "none" and o.result == PASSED:
                return Outcome(FAILED)
        if reasons:
            return Outcome(NOT_APPLICABLE, _cut("; ".join(reasons)))
        return Outcome(FAILED if rs.condition == "any" else PASSED)

    def rule(self, rule: Rule) -> Outcome:
        o = self._evaluate(rule)
        if rule.negated and o.result != NOT_APPLICABLE:
            return Outcome(FAILED if o.result == PASSED else PASSED)
        return o

    def _evaluate(self, rule: Rule) -> Outcome:
        if rule.kind == "f":
            return self._files(rule)
        if rule.kind == "d":
            return self._directories(rule)
        if rule.kind == "c":
            return self._command(rule)
        if rule.kind == "p":
            return self._process(rule)
        return Outcome(NOT_APPLICABLE, "registry rules apply to Windows only")

    # -- f: --------------------------------------------------------------------------------
    def _files(self, rule: Rule) -> Outcome:
        if rule.content is None:
            denied = []
            for path in rule.targets:
                try:
                    st = os.stat(path)
                except PermissionError:
                    denied.append(path)
                    continue
                except OSError:
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    return Outcome(PASSED)
            if denied:
                return Outcome(
                    NOT_APPLICABLE, f"cannot tell whether {denied[0]} exists: permission denied"
                )
            return Outcome(FAILED)
        return self._contents(list(rule.targets), rule.content)

    def _contents(self, paths: list[str], content: Content) -> Outcome:
        """passed when a line of one of ``paths`` passes; not applicable when none was read."""
        problems: list[str] = []
        read_one = False
        for path in paths:
            try:
                text = self._read(path)
            except _ReadProblem as p:
                problems.append(p.detail)
                continue
            read_one = True
            if content.passes(text):
                return Outcome(PASSED)
        if read_one:
            return Outcome(FAILED)
        return Outcome(NOT_APPLICABLE, _cut("; ".join(problems)))

    def _read(self, path: str) -> str:
        cap = self.settings.max_file_bytes
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise _ReadProblem("missing", f"file missing: {path}") from None
        except OSError as exc:
            raise _ReadProblem(
                "unreadable", f"file unreadable: {path} ({(exc.strerror or str(exc)).lower()})"
            ) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _ReadProblem("not_file", f"not a regular file: {path}")
            chunks: list[bytes] = []
            size = 0
            while size <= cap:
                chunk = os.read(fd, min(1024 * 1024, cap + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > cap:
                raise _ReadProblem("too_large", f"file larger than max_file_bytes: {path}")
        except OSError as exc:
            raise _ReadProblem(
                "unreadable", f"file unreadable: {path} ({(exc.strerror or str(exc)).lower()})"
            ) from None
        finally:
            os.close(fd)
        return b"".join(chunks).decode("utf-8", "replace")

    # -- d: --------------------------------------------------------------------------------
    def _directories(self, rule: Rule) -> Outcome:
        dirs: list[str] = []
        denied: list[str] = []
        for target in rule.targets:
            candidates = sorted(glob.glob(target)) if glob.has_magic(target) else [target]
            for d in candidates:
                try:
                    if stat.S_ISDIR(os.stat(d).st_mode):
                        dirs.append(d)
                except PermissionError:
                    denied.append(d)
                except OSError:
                    pass
        if rule.name is None:
            if dirs:
                return Outcome(PASSED)
            if denied:
                return Outcome(
                    NOT_APPLICABLE, f"cannot tell whether {denied[0]} exists: permission denied"
                )
            return Outcome(FAILED)
        found: list[str] = []
        unreadable: list[str] = list(denied)
        for entries, path in enumerate(self._walk(dirs, unreadable), 1):
            if entries > self.settings.max_dir_entries:
                return Outcome(
                    NOT_APPLICABLE,
                    f"more than max_dir_entries ({self.settings.max_dir_entries}) files under "
                    + ", ".join(dirs),
                )
            if rule.name.matches(os.path.basename(path)):
                found.append(path)
                if rule.content is None:
                    return Outcome(PASSED)
        if rule.content is not None and found:
            return self._contents(found, rule.content)
        if unreadable:
            return Outcome(NOT_APPLICABLE, f"directory unreadable: {unreadable[0]}")
        if not dirs:
            return Outcome(NOT_APPLICABLE, f"directory missing: {', '.join(rule.targets)}")
        return Outcome(FAILED)  # no such file: nothing in it can match

    def _walk(self, dirs: list[str], unreadable: list[str]) -> Iterator[str]:
        def error(exc: OSError) -> None:
            unreadable.append(str(exc.filename))

        for top in dirs:
            for dirpath, _dirnames, filenames in os.walk(top, onerror=error):
                if self.stop_event.is_set():
                    raise Interrupted()
                for name in sorted(filenames):
                    yield os.path.join(dirpath, name)

    # -- c: --------------------------------------------------------------------------------
    def _command(self, rule: Rule) -> Outcome:
        if rule.shell and self._no_shell:
            return Outcome(NOT_APPLICABLE, self._no_shell)  # never run
        key = (rule.shell, rule.targets[0])
        out = self._outputs.get(key)
        if out is None:
            out = run_command(
                (rule.targets[0],) if rule.shell else rule.argv,
                timeout=self.settings.command_timeout,
                max_output=self.settings.max_command_output,
                shell=rule.shell,
            )
            self._outputs[key] = out
        stdout = out.stdout
        if out.error:
            not_found = rule.shell and out.exit_code in (126, 127)
            if out.reason != "failed" or not_found:
                return Outcome(NOT_APPLICABLE, out.error)
            stdout = ""  # it ran, failed and printed nothing: no line to match
        if rule.content is None:
            return Outcome(PASSED)
        return Outcome(PASSED if rule.content.passes(stdout) else FAILED)

    # -- p: --------------------------------------------------------------------------------
    def _process(self, rule: Rule) -> Outcome:
        if self._processes is None:
            try:
                self._processes = running_processes()
            except OSError as exc:
                return Outcome(NOT_APPLICABLE, f"cannot list processes: {exc.strerror or exc}")
        return Outcome(PASSED if rule.targets[0] in self._processes else FAILED)


def running_processes() -> set[str]:
    """The names of the running processes: each one's ``comm`` and its argv[0]'s base name."""
    names: set[str] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        base = f"/proc/{entry}"
        try:
            with open(f"{base}/comm", "rb") as fh:
                names.add(fh.read().decode("utf-8", "replace").strip())
            with open(f"{base}/cmdline", "rb") as fh:
                argv0 = fh.read(4096).split(b"\0", 1)[0]
        except OSError:
            continue  # it ended meanwhile, or is not ours to read
        if argv0:
            names.add(os.path.basename(argv0.decode("utf-8", "replace")))
    names.discard("")
    return names


def _cut(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."
