"""`agentbus status`: every service's state and counters, for people (table) or scripts (--json).

Exit 0 when every service is up, 1 when one is down or the agent is not running.
"""

from __future__ import annotations

import argparse

HELP = "show every service's state and counters"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.helpfmt import synopsis

    synopsis(
        parser,
        "agentbus status                 # exit 0 when every service is up",
        "agentbus status --json | jq .services.forwarder.counters.queue_events",
        "agentbus status --watch",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document (default: a table)"
    )
    parser.add_argument(
        "--watch",
        action="store_true",
        help="redraw every second, Ctrl-C stops (default: print once)",
    )


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    import time

    from agent.cli.common import config_of
    from agent.status import collect_status, progress, rates, render

    config = config_of(args)
    report = collect_status(config)
    if args.json:
        print(json.dumps(report, default=str, indent=2))
        return 0 if report["summary"]["healthy"] else 1
    if not report["summary"]["running"]:
        print(render(report), file=sys.stderr)
        return 1
    if not args.watch:
        time.sleep(0.5)  # a second sample, half a second later, gives the current rates
        later = collect_status(config)
        print(render(later, rates(report, later)))
        return 0 if later["summary"]["healthy"] else 1
    backlog = int(report["services"]["forwarder"]["counters"].get("queue_events") or 0)
    try:
        while True:
            time.sleep(1.0)
            later = collect_status(config)
            rate = rates(report, later)
            left = int(later["services"]["forwarder"]["counters"].get("queue_events") or 0)
            backlog = max(backlog, left)
            bar = progress(later, rate, backlog)
            sys.stdout.write(
                "\x1b[2J\x1b[H" + render(later, rate) + ("\n" + bar if bar else "") + "\n"
            )
            sys.stdout.flush()
            report = later
    except KeyboardInterrupt:
        return 0
