"""The regex dialects of ``r:`` and ``n:`` content checks, compiled to Python ``re``.

``pcre2`` (the default: current Wazuh evaluates every pattern as PCRE2 and ignores
``regex_type``) is taken as Python ``re`` syntax, compiled as the Wazuh engine compiles
PCRE2 — case-insensitive, and with ``\\w \\d \\s \\b`` meaning their ASCII classes as
PCRE2 does without UCP. Python agrees with PCRE2 on what policies use (classes, groups,
alternation, anchors, lookahead, fixed-width lookbehind, lazy and possessive quantifiers,
atomic groups). What PCRE2 has and ``re`` does not — ``\\K``, ``\\Q...\\E``, ``\\h``,
``\\R``, ``\\v`` (vertical space, a VT character in ``re``), ``\\x{...}``, ``\\p{...}``,
POSIX classes ``[[:alpha:]]``, ``(?|``, recursion, backtracking verbs ``(*...)``,
variable-width lookbehind — is refused with the reason, never read with another meaning.

``osregex`` (``regex_type: osregex`` on a policy or a check: our extension, for policies
written for the 4.x agent) is the small OS_Regex language of those policies, translated
here so that they mean what their authors meant. Matching is case-sensitive and finds
the pattern anywhere in the line unless anchored:

- ``\\w`` letters, digits, ``_``, ``-`` and ``@``; ``\\d`` digits; ``\\s`` a space (not a
  tab: policies write ``\\s*\\t*``); ``\\t`` a tab; ``\\p`` punctuation
  (``()*+,-.:;<=>?[]!"'#$%&|{}``); ``\\W``, ``\\D``, ``\\S`` their complements;
  ``\\.`` any character.
- ``+`` and ``*`` repeat the element before them; ``(...)`` groups (and captures, which
  ``n:`` reads); ``|`` separates alternatives.
- ``^`` anchors only at the start of an alternative and ``$`` only at its end; anywhere
  else they, and every other character (``.``, ``[``, ``?``, ``{``...), are literal.
- ``\\$``, ``\\(``, ``\\)``, ``\\\\`` and ``\\|`` are the literal characters.
"""

from __future__ import annotations

import re
from typing import Literal

RegexType = Literal["pcre2", "osregex"]
REGEX_TYPES: tuple[str, ...] = ("pcre2", "osregex")
DEFAULT_REGEX_TYPE: RegexType = "pcre2"

_WORD = "A-Za-z0-9_@\\-"
_PUNCT = re.escape("()*+,-.:;<=>?[]!\"'#$%&|{}")
_CLASSES = {
    "w": f"[{_WORD}]",
    "W": f"[^{_WORD}]",
    "d": "[0-9]",
    "D": "[^0-9]",
    "s": "[ ]",
    "S": "[^ ]",
    "t": "\\t",
    "p": f"[{_PUNCT}]",
    "P": f"[^{_PUNCT}]",
    ".": ".",
}

#: PCRE2 escapes that Python ``re`` lacks or reads otherwise, and what they are
_PCRE2_ONLY_ESCAPES = {
    "K": "\\K (reset match start)",
    "Q": "\\Q...\\E quoting",
    "E": "\\Q...\\E quoting",
    "h": "\\h (horizontal space; write [ \\t])",
    "H": "\\H (not horizontal space; write [^ \\t])",
    "R": "\\R (any newline)",
    "v": "\\v (vertical space)",
    "V": "\\V (not vertical space)",
    "p": "\\p{...} (Unicode property)",
    "P": "\\P{...} (Unicode property)",
    "X": "\\X (extended grapheme cluster)",
    "C": "\\C (one code unit)",
    "N": "\\N (not a newline; write .)",
    "o": "\\o{...} (octal)",
    "e": "\\e (escape character; write \\x1b)",
    "c": "\\cX (control character)",
    "g": "\\g backreference (write \\1 or (?P=name))",
    "k": "\\k<name> backreference (write (?P=name))",
}
_PCRE2_ONLY_GROUPS = (
    ("(?|", "branch reset groups (?|...)"),
    ("(?R)", "recursion (?R)"),
    ("(?&", "subroutine calls (?&name)"),
    ("(?P>", "subroutine calls (?P>name)"),
    ("(?C", "callouts (?C)"),
    ("(*", "backtracking verbs and options (*...)"),
)
_SUBROUTINE = re.compile(r"\(\?[+-]?\d")
_POSIX_CLASS = re.compile(r"\[:\^?[a-z]+:\]")
_ESCAPED = re.compile(r"\\.", re.DOTALL)
_SET = re.compile(r"\[\^?\]?[^\]]*\]")


class PatternError(ValueError):
    """A pattern that cannot be compiled with its meaning; the message says why."""


def translate_osregex(pattern: str) -> str:
    """The Python ``re`` pattern that matches what the OS_Regex ``pattern`` matches."""
    out: list[str] = []
    #: whether the last piece can take ``+`` or ``*``
    repeatable = False
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        at_start = not out or out[-1] in ("(", "|")
        if c == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            out.append(_CLASSES.get(nxt, re.escape(nxt)))
            repeatable = True
            i += 2
            continue
        if c in "+*":
            out.append(c if repeatable else re.escape(c))
            repeatable = not repeatable  # "a+*" : the second one is literal
        elif c == "^":
            out.append("^" if at_start else re.escape(c))
            repeatable = not at_start
        elif c == "$":
            ends = i + 1 == n or pattern[i + 1] in "|)"
            out.append("$" if ends else re.escape(c))
            repeatable = not ends
        elif c in "|()":
            out.append(c)
            repeatable = c == ")"
        else:
            out.append(re.escape(c))
            repeatable = True
        i += 1
    return "".join(out)


def pcre2_only(pattern: str) -> str:
    """What in ``pattern`` is PCRE2 syntax that Python ``re`` lacks ("" when nothing)."""
    i, n = 0, len(pattern)
    while i < n - 1:
        if pattern[i] == "\\":
            nxt = pattern[i + 1]
            if nxt in _PCRE2_ONLY_ESCAPES:
                return _PCRE2_ONLY_ESCAPES[nxt]
            if nxt == "x" and pattern.startswith("{", i + 2):
                return "\\x{...} (write \\xHH or \\uHHHH)"
            i += 2
            continue
        i += 1
    unescaped = _ESCAPED.sub("__", pattern)
    outside_sets = _SET.sub("__", unescaped)  # "[(*]" is two characters, not a verb
    for token, what in _PCRE2_ONLY_GROUPS:
        if token in outside_sets:
            return what
    if _SUBROUTINE.search(outside_sets):
        return "subroutine calls (?1)"
    m = _POSIX_CLASS.search(unescaped)
    if m:
        return f"POSIX class {m.group(0)} (write the class out, e.g. [a-z] for [:lower:])"
    return ""


def compile_regex(pattern: str, regex_type: RegexType = DEFAULT_REGEX_TYPE) -> re.Pattern[str]:
    """``pattern`` compiled; raises :class:`PatternError` (with the reason) when it is not
    valid, or uses PCRE2 syntax that Python ``re`` cannot give the same meaning."""
    if regex_type == "osregex":
        try:
            return re.compile(translate_osregex(pattern))
        except re.error as exc:
            raise PatternError(str(exc)) from None
    unsupported = pcre2_only(pattern)
    if unsupported:
        raise PatternError(f"PCRE2 syntax that Python re does not support: {unsupported}")
    try:
        return re.compile(pattern, re.IGNORECASE | re.ASCII)
    except re.error as exc:
        raise PatternError(f"does not compile (PCRE2 as Python re): {exc}") from None
