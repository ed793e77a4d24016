"""`agentbus send`: turn JSON data objects into events on the acknowledged bus path.

Reads NDJSON (one JSON object per line) from stdin, or takes one JSON object as argument.
Exits 0 only when every event was committed by the forwarder; otherwise prints each
rejected line with its reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

HELP = "send JSON data objects (NDJSON on stdin, or one argument) as events"

#: events per acknowledged request
BATCH_EVENTS = 500
#: how long to keep retrying while the forwarder answers "full" (seconds)
FULL_RETRY_SECONDS = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from core.helpfmt import synopsis

    synopsis(
        parser,
        'echo \'{"message": "hello"}\' | agentbus send --module myapp --collector cli',
        'agentbus send --module myapp --collector cli \'{"user": "alice"}\'',
        "agentbus send --module myapp --collector assets --stateful --id host-1"
        ' --operation create \'{"os": "linux"}\'',
    )
    parser.add_argument("--module", required=True, help="module name, e.g. myapp")
    parser.add_argument("--collector", help="collector name (required except for module 'command')")
    parser.add_argument("--stateful", action="store_true", help="send stateful events")
    parser.add_argument("--id", help="document id (stateful)")
    parser.add_argument("--operation", choices=["create", "update", "delete"], help="(stateful)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds to wait for the forwarder",
    )
    parser.add_argument("data", nargs="?", help="one JSON object; default: NDJSON on stdin")


def run(args: argparse.Namespace) -> int:
    from agent.cli.common import config_of
    from bus.client import Ingest, make_event
    from bus.errors import EXIT_USAGE, BusTimeout, InvalidEvent
    from core.service import endpoints_from_config, socket_options_from_config

    if not args.stateful and (args.id or args.operation):
        return _usage("--id and --operation go with --stateful")
    if args.stateful and not (args.id and args.operation):
        return _usage("--stateful needs --id and --operation")
    if args.collector is None and args.module != "command":
        return _usage("--collector is required")

    config = config_of(args)
    endpoint = endpoints_from_config(config).ingest
    opts = socket_options_from_config(config)

    problems = 0
    sent = 0
    deleting = args.stateful and args.operation == "delete"
    lines = [(1, "null")] if deleting and args.data is None else _lines(args.data)
    with Ingest(endpoint, timeout=args.timeout, max_message_bytes=opts.max_message_bytes) as ingest:
        for batch in _batches(lines, BATCH_EVENTS):
            events: list[dict[str, Any]] = []
            line_of: list[int] = []
            for lineno, text in batch:
                try:
                    data = json.loads(text)
                    if deleting:
                        data = None
                    elif not isinstance(data, dict):
                        raise InvalidEvent("wrong_type", "data must be a JSON object")
                    events.append(
                        make_event(
                            args.module,
                            args.collector,
                            data,
                            stateful=args.stateful,
                            id=args.id,
                            operation=args.operation,
                        )
                    )
                    line_of.append(lineno)
                except json.JSONDecodeError as exc:
                    problems += 1
                    print(f"line {lineno}: not JSON: {exc.msg}", file=sys.stderr)
                except InvalidEvent as exc:
                    problems += 1
                    print(f"line {lineno}: {exc.reason}: {exc.message}", file=sys.stderr)
            if not events:
                continue
            result = ingest.send(events)
            give_up = time.monotonic() + FULL_RETRY_SECONDS
            while result.error == "full" and time.monotonic() < give_up:
                time.sleep(0.2)  # the forwarder asked us to come back later
                result = ingest.send(events)
            if result.error == "full":
                raise BusTimeout("the forwarder's queue stayed full; nothing more was sent")
            sent += result.accepted
            for rej in result.rejected:
                problems += 1
                where = line_of[rej.index] if 0 <= rej.index < len(line_of) else "?"
                print(f"line {where}: {rej.reason}: {rej.message}", file=sys.stderr)
    print(f"accepted {sent} event(s)" + (f", rejected {problems}" if problems else ""))
    return EXIT_USAGE if problems else 0


def _usage(message: str) -> int:
    print(f"agentbus send: {message}", file=sys.stderr)
    return 2


def _lines(argument: str | None) -> Iterator[tuple[int, str]]:
    if argument is not None:
        yield 1, argument
        return
    for lineno, line in enumerate(sys.stdin, start=1):
        if line.strip():
            yield lineno, line


def _batches(items: Iterable[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    batch: list[tuple[int, str]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
