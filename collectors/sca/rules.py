"""The rule language of SCA checks: one rule string parsed into a :class:`Rule`.

::

    [not ]f:PATH[,PATH...][ -> CONTENT]          files: existence, or a line of one
    [not ]d:DIR[,DIR...][ -> NAME[ -> CONTENT]]  directories: existence, a file in one
                                                 (searched recursively), or a line of it
    [not ]c:COMMAND -> CONTENT                   a line of a command's output
    [not ]p:NAME                                 a running process

    CONTENT := TEST[ && TEST...]                 one line must pass every test
    TEST    := [!]r:REGEX                        the line matches (collectors.sca.regex)
             | [!]n:REGEX compare OP NUMBER      its first group, an integer, compares
             | [!]TEXT                           the line is TEXT exactly
    NAME    := r:REGEX | TEXT                    a file name (not a path)
    OP      := < | <= | == | != | >= | >

The spaces around ``->``, ``&&`` and ``compare`` are part of the syntax. ``$name``
stands for the policy's variable of that name (a comma-separated list where paths go).
``!`` negates one test of a line, ``not`` the whole rule. Registry rules (``r:``) are
Windows-only: they parse, and evaluate as not applicable.
"""

from __future__ import annotations

import operator
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from collectors.sca.commands import needs_shell
from collectors.sca.regex import RegexType, compile_regex

RuleKind = Literal["f", "d", "c", "p", "r"]

ARROW = " -> "
AND = " && "
COMPARE = " compare "
OPERATORS: dict[str, Callable[[int, int], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    ">": operator.gt,
}
_VARIABLE = re.compile(r"(?<!\\)\$[A-Za-z_][A-Za-z0-9_]*")


class RuleError(ValueError):
    """A rule that cannot be parsed; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Test:
    """One test of a line: a literal, a regex or a numeric comparison, maybe negated."""

    kind: Literal["literal", "regex", "numeric"]
    negated: bool
    text: str
    regex: re.Pattern[str] | None = None
    op: str = ""
    value: int = 0

    def passes(self, line: str) -> bool:
        return self._matches(line) != self.negated

    def _matches(self, line: str) -> bool:
        if self.kind == "literal":
            return line == self.text
        assert self.regex is not None
        found = self.regex.search(line)
        if found is None:
            return False
        if self.kind == "regex":
            return True
        try:
            number = int(found.group(1))
        except (TypeError, ValueError):
            return False  # the group did not capture an integer on this line
        return OPERATORS[self.op](number, self.value)


@dataclass(frozen=True, slots=True)
class Content:
    """``TEST && TEST ...``: passes when one line passes every test."""

    tests: tuple[Test, ...]

    def line_passes(self, line: str) -> bool:
        return all(t.passes(line) for t in self.tests)

    def passes(self, text: str) -> bool:
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()  # the newline ends the last line; it starts no empty one
        return any(self.line_passes(line.rstrip("\r")) for line in lines)


@dataclass(frozen=True, slots=True)
class NamePattern:
    """The file name a ``d:`` rule looks for: exact, or a regex."""

    text: str
    regex: re.Pattern[str] | None = None

    def matches(self, name: str) -> bool:
        if self.regex is None:
            return name == self.text
        return self.regex.search(name) is not None


@dataclass(frozen=True, slots=True)
class Rule:
    """One parsed rule."""

    raw: str
    kind: RuleKind
    negated: bool
    #: paths (f, d), the command line (c), the process name (p), the key (r)
    targets: tuple[str, ...]
    name: NamePattern | None = None
    content: Content | None = None
    #: c: the argument vector, when it runs without a shell
    argv: tuple[str, ...] = ()
    #: c: the command uses shell syntax (pipes, globs, $(...), redirections...)
    shell: bool = False


def substitute(text: str, variables: Mapping[str, str], *, strict: bool) -> str:
    """``text`` with each ``$name`` replaced; an unknown one is an error when ``strict``."""

    def replace(m: re.Match[str]) -> str:
        name = m.group(0)
        if name in variables:
            return variables[name]
        if strict:
            raise RuleError(f"unknown variable {name}")
        return name

    return _VARIABLE.sub(replace, text)


def parse_rule(
    raw: str, variables: Mapping[str, str] | None = None, regex_type: RegexType = "osregex"
) -> Rule:
    """Parse one rule (raises :class:`RuleError` saying what is wrong)."""
    variables = variables or {}
    text = raw.strip()
    negated = False
    if text.startswith("not "):
        negated, text = True, text[4:].lstrip()
    if len(text) < 3 or text[1] != ":" or text[0] not in "fdcpr":
        raise RuleError("a rule starts with f:, d:, c:, p: or r: (optionally after 'not ')")
    kind: RuleKind = text[0]  # type: ignore[assignment]
    location, *parts = text[2:].split(ARROW)
    # A path must name a known variable; a command may hold a "$" of its own.
    location = substitute(location, variables, strict=kind != "c").strip()
    if not location:
        raise RuleError("nothing to check after the rule type")
    parts = [substitute(p, variables, strict=False) for p in parts]
    if kind in ("f", "d"):
        targets = tuple(p.strip() for p in location.split(",") if p.strip())
        if not all(t.startswith("/") for t in targets):
            raise RuleError(f"{kind}: takes absolute paths, got {location!r}")
        if kind == "f":
            if len(parts) > 1:
                raise RuleError("f: takes at most one content check after '->'")
            content = _content(parts[0], regex_type) if parts else None
            return Rule(raw, kind, negated, targets, content=content)
        if len(parts) > 2:
            raise RuleError("d: takes a file name and at most one content check")
        name = _name(parts[0], regex_type) if parts else None
        content = _content(parts[1], regex_type) if len(parts) == 2 else None
        return Rule(raw, kind, negated, targets, name=name, content=content)
    if kind == "c":
        if len(parts) != 1:
            raise RuleError("c: checks the command's output: 'c:COMMAND -> CONTENT'")
        shell = needs_shell(location)
        argv: tuple[str, ...] = ()
        if not shell:
            try:
                argv = tuple(shlex.split(location))
            except ValueError as exc:
                raise RuleError(f"cannot split the command: {exc}") from None
        return Rule(
            raw,
            kind,
            negated,
            (location,),
            content=_content(parts[0], regex_type),
            argv=argv,
            shell=shell,
        )
    if kind == "p":
        if parts:
            raise RuleError("p: checks only that a process runs (no '->')")
        return Rule(raw, kind, negated, (location,))
    return Rule(raw, kind, negated, (location,))  # registry: Windows only


def _name(text: str, regex_type: RegexType) -> NamePattern:
    text = text.strip()
    if not text:
        raise RuleError("empty file name after '->'")
    if text.startswith("r:"):
        return NamePattern(text[2:], _regex(text[2:], regex_type))
    return NamePattern(text)


def _content(text: str, regex_type: RegexType) -> Content:
    tests = []
    for part in text.split(AND):
        part = part.strip()
        negated = part.startswith("!")
        if negated:
            part = part[1:]
        if not part:
            raise RuleError("empty content check")
        if part.startswith("r:"):
            tests.append(Test("regex", negated, part[2:], _regex(part[2:], regex_type)))
        elif part.startswith("n:"):
            tests.append(_numeric(part[2:], negated, regex_type))
        else:
            tests.append(Test("literal", negated, part))
    return Content(tuple(tests))


def _numeric(text: str, negated: bool, regex_type: RegexType) -> Test:
    pattern, sep, comparison = text.rpartition(COMPARE)
    if not sep:
        raise RuleError("n: needs 'REGEX compare OP NUMBER'")
    op, _, value = comparison.strip().partition(" ")
    if op not in OPERATORS:
        raise RuleError(f"unknown comparison {op!r} (one of {' '.join(OPERATORS)})")
    try:
        number = int(value.strip())
    except ValueError:
        raise RuleError(f"n: compares with an integer, got {value.strip()!r}") from None
    regex = _regex(pattern, regex_type)
    if regex.groups < 1:
        raise RuleError("n: needs a capture group around the number, e.g. (\\d+)")
    return Test("numeric", negated, pattern, regex, op, number)


def _regex(pattern: str, regex_type: RegexType) -> re.Pattern[str]:
    try:
        return compile_regex(pattern, regex_type)
    except re.error as exc:
        raise RuleError(f"invalid regex {pattern!r}: {exc}") from None
