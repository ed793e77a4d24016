"""`agentbus server` (not built yet)."""

from __future__ import annotations

import argparse
import sys

HELP = "server (not built yet)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("agentbus: 'server' is not built yet", file=sys.stderr)
    return 1
