"""The rule language of SCA checks: one rule string parsed into a :class:`Rule`.

::

    [not ]f:PATH[,PATH...][ -> CONTENT]          files: existence, or a line of one
    [not ]d:DIR[,DIR...][ -> NAME[ -> CONTENT]]  directories: existence, a file in one
                                                 (searched recursively), or a line of it
    [not ]c:COMMAND[ -> CONTENT]                 a line of a command's output (without
                                                 CONTENT: that the command ran)
    [not ]p:NAME                                 a running process

    CONTENT := TEST[ && TEST...]                 one line must pass every test
    TEST    := [!]r:REGEX                        the line matches (collectors.sca.regex)
             | [!]n:REGEX compare OP NUMBER      its first group (else the whole match),
                                                 an integer, compares with NUMBER
             | [!]TEXT                           the line is TEXT exactly
    NAME    := CONTENT                           tested on a file's name (not its path)
    OP      := < | <= | == | != | >= | >

The spaces around ``->``, ``&&`` and ``compare`` and between the operator and the number
are part of the syntax; 4.x spellings (``=``, ``=>``, ``=<``, ``\\!=``) are refused with
the fix. ``$name`` stands for the policy's variable of that name (a comma-separated list
where paths go). ``!`` negates one test of a line, ``not`` the whole rule. A CONTENT that
is one negated test alone (``!r:X``) passes when *no* line matches X — the whole text,
not one line, as the Wazuh engines read it. Registry rules (``r:``) are Windows-only:
they parse, and evaluate as not applicable.
"""

from __future__ import annotations

import operator
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from collectors.sca.commands import needs_shell
from collectors.sca.regex import DEFAULT_REGEX_TYPE, PatternError, RegexType, compile_regex

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
            number = int(found.group(1) if self.regex.groups else found.group(0))
        except (TypeError, ValueError):
            return False  # the group did not capture an integer on this line
        return OPERATORS[self.op](number, self.value)


@dataclass(frozen=True, slots=True)
class Content:
    """``TEST && TEST ...``: passes when one line passes every test — except ``!TEST``
    alone, which passes when no line matches TEST."""

    text: str
    tests: tuple[Test, ...]

    def line_passes(self, line: str) -> bool:
        return all(t.passes(line) for t in self.tests)

    def passes(self, text: str) -> bool:
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()  # the newline ends the last line; it starts no empty one
        if len(self.tests) == 1 and self.tests[0].negated:
            only = self.tests[0]
            return not any(only._matches(line.rstrip("\r")) for line in lines)
        return any(self.line_passes(line.rstrip("\r")) for line in lines)

    def matches(self, name: str) -> bool:
        """A file name (one line) passes."""
        return self.passes(name)


@dataclass(frozen=True, slots=True)
class Rule:
    """One parsed rule."""

    raw: str
    kind: RuleKind
    negated: bool
    #: paths (f, d), the command line (c), the process name (p), the key (r)
    targets: tuple[str, ...]
    #: d: the file names looked for
    name: Content | None = None
    content: Content | None = None
    #: c: the argument vector, when it runs without a shell
    argv: tuple[str, ...] = ()
    #: c: the command uses shell syntax (pipes, globs, $(...), redirections...)
    shell: bool = False
    #: what in the rule is read otherwise than it may seem (the policy still loads)
    warning: str = ""


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
    raw: str,
    variables: Mapping[str, str] | None = None,
    regex_type: RegexType = DEFAULT_REGEX_TYPE,
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
    # One more " -> " than the rule type takes is part of the last content check, as the
    # Wazuh engines read it (a policy bug, usually: warned about, not refused).
    warning = ""
    takes = 2 if kind == "d" else 1
    if kind in "fdc" and len(parts) > takes:
        parts = parts[: takes - 1] + [ARROW.join(parts[takes - 1 :])]
        warning = f"' -> ' in the content check '{parts[-1].strip()}' is read as part of it"
    if kind in ("f", "d"):
        targets = tuple(p.strip() for p in location.split(",") if p.strip())
        if not all(t.startswith("/") for t in targets):
            raise RuleError(f"{kind}: takes absolute paths, got {location!r}")
        if kind == "f":
            content = _content(parts[0], regex_type) if parts else None
            return Rule(raw, kind, negated, targets, content=content, warning=warning)
        name = _content(parts[0], regex_type) if parts else None
        content = _content(parts[1], regex_type) if len(parts) == 2 else None
        return Rule(raw, kind, negated, targets, name=name, content=content, warning=warning)
    if kind == "c":
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
            content=_content(parts[0], regex_type) if parts else None,
            argv=argv,
            shell=shell,
            warning=warning,
        )
    if kind == "p":
        if parts:
            raise RuleError("p: checks only that a process runs (no '->')")
        return Rule(raw, kind, negated, (location,))
    return Rule(raw, kind, negated, (location,))  # registry: Windows only


def _content(text: str, regex_type: RegexType) -> Content:
    if not text.strip():
        raise RuleError("nothing to check after '->'")
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
    return Content(text.strip(), tuple(tests))


#: 4.x spellings of the operators, refused with the right one
_OLD_OPERATORS = {"=": "==", "=>": ">=", "=<": "<=", "\\!=": "!="}


def _numeric(text: str, negated: bool, regex_type: RegexType) -> Test:
    pattern, sep, comparison = text.rpartition(COMPARE)
    if not sep or not pattern:
        raise RuleError(f"n: needs 'REGEX compare OP NUMBER' with spaces, got 'n:{text}'")
    op, space, value = comparison.partition(" ")
    if op in _OLD_OPERATORS:
        raise RuleError(f"n: operator {op!r} is not valid: write {_OLD_OPERATORS[op]!r}")
    if op not in OPERATORS:
        raise RuleError(
            f"n: unknown comparison {comparison!r}: 'compare OP NUMBER' with OP one of "
            + " ".join(OPERATORS)
        )
    if not space or not value or value != value.strip():
        raise RuleError(f"n: needs one space between {op!r} and the number, got {comparison!r}")
    try:
        number = int(value)
    except ValueError:
        raise RuleError(f"n: compares with an integer, got {value!r}") from None
    return Test("numeric", negated, pattern, _regex(pattern, regex_type), op, number)


def _regex(pattern: str, regex_type: RegexType) -> re.Pattern[str]:
    try:
        return compile_regex(pattern, regex_type)
    except PatternError as exc:
        raise RuleError(f"regex '{pattern}': {exc}") from None
