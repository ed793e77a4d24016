"""`agentbus quarantine list|retry|drop`: act on events the server refused one by one.

The forwarder owns ``queue/quarantine.db``; this command asks the running forwarder over
its control sockets, so it works while events keep flowing: ``list`` over the status
socket (the agent's group may), ``retry`` and ``drop`` over the admin socket (the agent's
user and root only).

    agentbus quarantine list [--limit N] [--json]
    agentbus quarantine retry (ID ... | --all)     # back to the queue, sent again
    agentbus quarantine drop (ID ... | --all)      # forget them for good
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

HELP = "list, retry or drop events the server refused (the forwarder's quarantine)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.helpfmt import synopsis

    synopsis(
        parser,
        "agentbus quarantine list --limit 20",
        "agentbus quarantine retry 12 13      # back to the queue, sent again",
        "agentbus quarantine drop --all       # forget them for good",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    # --config also after the action (`agentbus quarantine list --config F`); SUPPRESS so
    # that an absent one does not hide a --config given before the action
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="configuration file (default: $AGENTBUS_CONFIG, else the packaged default)",
    )
    p = sub.add_parser("list", help="show quarantined events", parents=[config])
    synopsis(p, "agentbus quarantine list --after 40 --json")
    p.add_argument("--limit", type=int, default=100, help="entries to show (default 100)")
    p.add_argument(
        "--after", type=int, default=0, help="only entries with a larger id (default 0: all)"
    )
    p.add_argument(
        "--json", action="store_true", help="print the entries as JSON (default: a table)"
    )
    for name, text in (
        ("retry", "move entries back to the queue"),
        ("drop", "delete entries for good"),
    ):
        p = sub.add_parser(name, help=text, parents=[config])
        synopsis(p, f"agentbus quarantine {name} 12 13", f"agentbus quarantine {name} --all")
        p.add_argument("ids", nargs="*", type=int, metavar="ID", help="entry ids (see list)")
        p.add_argument("--all", action="store_true", help="every entry (default: the IDs given)")


def run(args: argparse.Namespace) -> int:
    from agent.cli.common import config_of
    from bus.control import request
    from bus.errors import EXIT_RUNTIME, EXIT_USAGE, BusError, BusTimeout
    from core.service import endpoints_from_config

    config = config_of(args)
    endpoints = endpoints_from_config(config)
    # retry and drop change the quarantine: only the owner-only admin socket takes them
    read_only = args.action == "list"
    endpoint = endpoints.control("forwarder") if read_only else endpoints.admin("forwarder")
    if args.action == "list":
        message: dict[str, Any] = {"cmd": "quarantine_list", "limit": args.limit}
        message["after"] = args.after
    else:
        if bool(args.ids) == bool(args.all):
            print(f"agentbus quarantine {args.action}: give entry ids or --all", file=sys.stderr)
            return EXIT_USAGE
        message = {"cmd": f"quarantine_{args.action}"}
        message.update({"all": True} if args.all else {"ids": args.ids})
    try:
        reply = request(endpoint, message, timeout=10.0)
    except BusTimeout:
        print(
            "agentbus: the forwarder is not running (its control socket did not answer)",
            file=sys.stderr,
        )
        return EXIT_RUNTIME
    except BusError as exc:  # e.g. the admin socket is not ours to use
        print(f"agentbus quarantine {args.action}: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    if not reply.get("ok"):
        print(
            f"agentbus: {reply.get('error', 'the forwarder refused the request')}", file=sys.stderr
        )
        return EXIT_RUNTIME
    if args.action == "list":
        _print_list(reply, args.json)
    elif args.action == "retry":
        print(f"moved {reply['retried']} event(s) back to the queue")
    else:
        print(f"dropped {reply['dropped']} event(s)")
    missing = int(reply.get("missing") or 0)
    if missing:
        print(f"agentbus: {missing} id(s) were not in the quarantine", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _print_list(reply: dict[str, Any], as_json: bool) -> None:
    entries = reply.get("entries", [])
    if as_json:
        print(json.dumps({"total": reply.get("total", len(entries)), "entries": entries}))
        return
    print(f"{reply.get('total', len(entries))} event(s) in quarantine")
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"]))
        print(f"#{e['id']}  {when}  {e['kind']}  HTTP {e['status']}: {e['message']}")
        print(f"    {e['event']}")
