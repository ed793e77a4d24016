"""`agentbus scan SERVICE`: make a running scanning collector (inventory, fim, sca) scan now.

It sends ``scan`` to the service's owner-only admin socket (the agent's user and root
only): the collector scans at once, or once more right after the scan it is running, and
reports what changed as usual. Exit 0 when the service took it, 1 when it is not running
or refused, 2 on usage.

    agentbus scan sca          # assess the SCA policies now (e.g. after editing one)
"""

from __future__ import annotations

import argparse
import json
import sys

HELP = "make a running collector (inventory, fim, sca) scan now instead of at its interval"

#: the services whose loop scans at an interval (collectors/stateful.py)
SCANNING = ("inventory", "fim", "sca")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.helpfmt import synopsis

    synopsis(
        parser,
        "agentbus scan sca          # assess the SCA policies now",
        "agentbus scan fim --json",
    )
    parser.add_argument("service", choices=SCANNING, metavar="SERVICE", help=", ".join(SCANNING))
    parser.add_argument(
        "--json", action="store_true", help="print the service's answer as JSON (default: a line)"
    )


def run(args: argparse.Namespace) -> int:
    from agent.cli.common import config_of
    from bus.control import request
    from bus.errors import EXIT_RUNTIME, BusError, BusTimeout
    from core.service import endpoints_from_config

    config = config_of(args)
    endpoint = endpoints_from_config(config).admin(args.service)
    try:
        reply = request(endpoint, {"cmd": "scan"})
    except BusTimeout:
        print(
            f"agentbus: {args.service} is not running (its admin socket did not answer)",
            file=sys.stderr,
        )
        return EXIT_RUNTIME
    except BusError as exc:  # e.g. the admin socket is not ours to use
        print(f"agentbus scan {args.service}: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    if args.json:
        print(json.dumps(reply))
    if not reply.get("ok"):
        if not args.json:
            print(f"agentbus: {reply.get('error', 'the scan was refused')}", file=sys.stderr)
        return EXIT_RUNTIME
    if not args.json:
        if reply.get("scan") == "queued":
            print(f"{args.service}: a scan is running; one more follows it")
        else:
            print(f"{args.service}: scan started")
    return 0
