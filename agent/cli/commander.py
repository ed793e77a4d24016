"""`agentbus commander` (not built yet)."""

from __future__ import annotations

import argparse
import sys

HELP = "commander (not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("agentbus: 'commander' is not built yet", file=sys.stderr)
    return 1
