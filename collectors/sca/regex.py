"""The two regex dialects of ``r:`` and ``n:`` content checks, compiled to Python ``re``.

``osregex`` (the default, as in the classic Wazuh agent) is the small OS_Regex language
that policies written for it use, translated here so that they mean what their authors
meant; ``pcre2`` (``regex_type: pcre2`` in a policy or check) is taken as Python ``re``
syntax, which agrees with PCRE2 on everything policies commonly use.

OS_Regex, as translated (matching is case-sensitive and finds the pattern anywhere in the
line unless anchored):

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

RegexType = Literal["osregex", "pcre2"]
REGEX_TYPES: tuple[str, ...] = ("osregex", "pcre2")

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


def compile_regex(pattern: str, regex_type: RegexType = "osregex") -> re.Pattern[str]:
    """``pattern`` compiled; raises ``re.error`` (with the reason) when it is not valid."""
    if regex_type == "osregex":
        return re.compile(translate_osregex(pattern))
    return re.compile(pattern)
