"""`agentbus demo`: the whole system at once against the embedded reference server."""

from __future__ import annotations

import argparse

HELP = "run the whole system in a temporary directory and show it working"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.helpfmt import synopsis

    synopsis(parser, "agentbus demo", "agentbus demo --keep --dir /tmp/ab-demo")
    parser.description = (
        f"{HELP}. Each line of the summary, read back from the server, ends with ok or"
        " what is wrong (MISSING 3 of 50); the exit status is 1 when any line is not ok."
        " With --keep, it ends with commands to try against it."
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave everything running to explore (default: stop and clean up)",
    )
    parser.add_argument(
        "--dir",
        help="work in this directory (default: a new temporary one)",
    )


def run(args: argparse.Namespace) -> int:
    from agent.demo import run_demo

    return run_demo(keep=args.keep, directory=args.dir)
