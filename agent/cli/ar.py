"""`agentbus ar`: the active responses, tried and listed here.

``agentbus ar list`` shows the programs the allowed directory offers (or why each would be
refused) and the timed responses in force with when each ends, from the executor's state
(``[active_response] state_dir``; root or the executor's user may read it).

``agentbus ar run NAME add|delete [--arg KEY=VALUE]... [--extra-arg X]... [--apply]``
runs the program NAME as the executor would — found and checked the same way, the same
JSON message on its standard input (``--arg srcip=203.0.113.7`` sets
``parameters.alert.data.srcip``), the same environment, timeout and output cap — and
prints its output. Without ``--apply`` it runs the program with ``--dry-run``: our
programs then only print what they would do (a program of yours must honour it too:
docs/active-response.md). A response run here is not timed: undo it with ``delete``.
Exit 0 when the program succeeded, 1 otherwise (3 when it timed out), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

# at the top: without the package, `agentbus ar` says what is missing (agent/main.py)
from active_response.settings import load
from core.helpfmt import synopsis

HELP = "active responses: list those in force, or try one here (dry-run unless --apply)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="ar_action", metavar="ACTION", required=True)
    synopsis(
        parser,
        "agentbus ar list",
        "agentbus ar run firewall-drop add --arg srcip=203.0.113.7",
        "agentbus ar run firewall-drop delete --arg srcip=203.0.113.7 --apply",
    )
    list_parser = actions.add_parser("list", help="programs offered and responses in force")
    list_parser.add_argument("--json", action="store_true", help="print one JSON document")
    run_parser = actions.add_parser("run", help="run one program here (dry-run unless --apply)")
    run_parser.add_argument("name", help="the program's name (in the allowed directory)")
    run_parser.add_argument("command", choices=("add", "delete"))
    run_parser.add_argument(
        "--arg", metavar="KEY=VALUE", action="append", default=[],
        help="a field of the alert's data (srcip=..., dstuser=...); repeatable",
    )  # fmt: skip
    run_parser.add_argument(
        "--extra-arg", metavar="X", action="append", default=[], help="one of extra_args"
    )
    run_parser.add_argument("--apply", action="store_true", help="really act (default: dry-run)")
    synopsis(list_parser, "agentbus ar list --json")
    synopsis(run_parser, "agentbus ar run host-deny add --arg srcip=203.0.113.7")
    for p in (list_parser, run_parser):
        # SUPPRESS: `agentbus ar --config F list` keeps the F given before the action
        p.add_argument(
            "--config", metavar="FILE", default=argparse.SUPPRESS, help="configuration file"
        )


def run(args: argparse.Namespace) -> int:
    config, settings = load(getattr(args, "config", None))
    if args.ar_action == "list":
        return _list(settings, args.json)
    return _run(config, settings, args)


def _list(settings: Any, as_json: bool) -> int:
    from active_response.programs import list_programs
    from active_response.status import read_status
    from active_response.store import Store

    offered = list_programs(settings.programs_dir, settings.enabled)
    status = read_status(settings.state_dir)
    try:
        store = Store(settings.state_dir, readonly=True)
        in_force = [item.view() for item in store.in_force()]
        store.close()
    except Exception:
        in_force = (status or {}).get("in_force", [])
    if as_json:
        print(
            json.dumps(
                {"programs": dict(offered), "in_force": in_force, "status": status}, indent=2
            )
        )
        return 0
    print(f"programs ({settings.programs_dir}):")
    for name, what in offered or [
        ("(none)", "nothing is allowed: link a program here to enable it")
    ]:
        print(f"  {name:<20} {what}")
    print(f"responses in force ({len(in_force)}):")
    now = time.time()
    for item in in_force:
        data = (item.get("alert") or {}).get("data") or {}
        target = ", ".join(f"{k}={v}" for k, v in sorted(data.items())) or json.dumps(
            item.get("extra_args")
        )
        ends = _when(item["expires_at"])
        left = max(0, int(item["expires_at"] - now))
        print(f"  {item['program']:<20} {target:<32} ends {ends} (in {left}s)")
    if status:
        counters = status.get("counters", {})
        age = int(now - status.get("updated", now))
        print(
            f"executor (pid {status.get('pid')}, status {age}s old): "
            + ", ".join(f"{k} {v}" for k, v in sorted(counters.items()))
            + (f"; refused {status.get('refused')}" if status.get("refused") else "")
        )
    else:
        print("executor: no status file (it has not run with this state_dir)")
    return 0


def _run(config: Any, settings: Any, args: argparse.Namespace) -> int:
    from active_response import programs
    from active_response.executor import program_environment, result_of
    from active_response.message import Request, build
    from active_response.run import run_program
    from bus.errors import EXIT_USAGE

    data: dict[str, str] = {}
    for item in args.arg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"agentbus: --arg {item!r}: expected KEY=VALUE", file=sys.stderr)
            return EXIT_USAGE
        data[key] = value
    try:
        program = programs.find(args.name, settings.programs_dir, settings.enabled)
    except programs.Refused as exc:
        print(f"agentbus: {exc}", file=sys.stderr)
        return 1
    request = Request(
        args.name, args.command, list(args.extra_arg), {"data": data} if data else {},
        dry_run=not args.apply,
    )  # fmt: skip
    message = build(request, "agentbus-ar-cli")
    print(f"program: {program.path}")
    print(f"message: {message.decode().strip()}")
    print(f"running it {'for real (--apply)' if args.apply else 'with --dry-run'}:")
    outcome = run_program(
        program.path, message, argv=() if args.apply else ("--dry-run",),
        timeout=settings.run_timeout, max_output=settings.max_output,
        env=program_environment(config, settings),
    )  # fmt: skip
    for line in outcome.output.splitlines():
        print(f"  | {line}")
    code, text = result_of(args.name, outcome, settings.max_output)
    print(f"result: {code} {text}")
    return code


def _when(ts: float) -> str:
    from active_response.executor import until

    return until(ts)
