"""Help that reads like a man page's synopsis: every option with its default, and examples.

``synopsis(parser, "agentbus status --json", ...)`` makes ``parser``'s help show each
option's default (unless its text already speaks of one, or it has none: a flag that is
off, an option unset by default) and ends it with the examples, kept as written. Light on
purpose: ``agentbus --help`` and every service's start parse with it.
"""

from __future__ import annotations

import argparse


class SynopsisFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description and the examples as written; adds "(default: X)"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or not action.option_strings
            or action.default in (None, False, argparse.SUPPRESS)
        ):
            return text
        return f"{text} (default: %(default)s)"


def synopsis(parser: argparse.ArgumentParser, *examples: str) -> None:
    """Give ``parser`` the formatter above and an epilog of ``examples`` (one per line)."""
    parser.formatter_class = SynopsisFormatter
    lines = "\n".join(f"  {example}" for example in examples)
    parser.epilog = f"example{'s' if len(examples) > 1 else ''}:\n{lines}"
