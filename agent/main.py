"""The ``agentbus`` command: parses arguments and hands over to one subcommand module.

Each subcommand lives in its own module with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; this file only wires them up and turns errors into one line on stderr
and the exit codes of the CLI contract (README; 0 ok, 1 runtime, 2 usage/config, 3 server).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from bus.errors import EXIT_RUNTIME, EXIT_USAGE, AgentbusError

#: subcommand → module implementing it; SERVICES marks where ``agentbus <service>`` go,
#: one per service of the registry (core/registry.py), all run by agent/cli/service.py
SERVICES = "<services>"
SUBCOMMANDS = {
    "register": "agent.cli.register",
    "run": "agent.cli.run",
    SERVICES: "agent.cli.service",
    "send": "agent.cli.send",
    "status": "agent.cli.status",
    "quarantine": "agent.cli.quarantine",
    "server": "refserver.cli",
    "demo": "agent.cli.demo",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line on stderr and exit 2, like every other failure.
        self.exit(EXIT_USAGE, f"agentbus: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="agentbus", description="Endpoint security agent on a local ZeroMQ bus.")
    from core.version import __version__

    parser.add_argument("--version", action="version", version=f"agentbus {__version__}")
    common = _Parser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        help="configuration file (default: $AGENTBUS_CONFIG, else the packaged default)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, module_name in SUBCOMMANDS.items():
        if name == SERVICES:
            _add_services(sub, common)
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            # The reference server is an optional extra; say how to get it.
            missing = exc.name or "a dependency"
            p = sub.add_parser(
                name, parents=[common], help=f"(unavailable: {missing} not installed)"
            )
            p.set_defaults(func=_unavailable(name, missing))
            continue
        p = sub.add_parser(name, parents=[common], help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def _add_services(sub: Any, common: argparse.ArgumentParser) -> None:
    from agent.cli import service
    from core import registry

    for spec in registry.SERVICES:
        p = sub.add_parser(spec.name, parents=[common], help=spec.help, description=spec.help)
        service.add_arguments(p, spec)
        p.set_defaults(func=functools.partial(service.run, spec.name))


def _unavailable(name: str, missing: str):  # type: ignore[no-untyped-def]
    def run(_args: argparse.Namespace) -> int:
        hint = " (pip install 'agentbus[server]')" if name in ("server", "demo") else ""
        print(f"agentbus: '{name}' needs {missing}, which is not installed{hint}", file=sys.stderr)
        return EXIT_USAGE

    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AgentbusError as exc:
        print(f"agentbus: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
