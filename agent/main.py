"""The ``agentbus`` command: parses arguments and hands over to one subcommand module.

Each subcommand lives in its own module with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; this file only wires them up and turns errors into one line on stderr
and the exit codes of the CLI contract (README; 0 ok, 1 runtime, 2 usage/config, 3 server).

A subcommand's module is imported only once that subcommand is chosen: ``agentbus --help``
lists them from :data:`HELP` and the registry, and ``agentbus run`` or ``agentbus
forwarder`` import neither the reference server nor the other subcommands
(tests/agent/test_imports.py).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from bus.errors import EXIT_RUNTIME, EXIT_USAGE, AgentbusError

if TYPE_CHECKING:
    from core.registry import ServiceSpec

#: subcommand → module implementing it; SERVICES marks where ``agentbus <service>`` go,
#: one per service of the registry (core/registry.py), all run by agent/cli/service.py
SERVICES = "<services>"
SUBCOMMANDS = {
    "register": "agent.cli.register",
    "run": "agent.cli.run",
    SERVICES: "agent.cli.service",
    "sca": "agent.cli.sca",
    "send": "agent.cli.send",
    "status": "agent.cli.status",
    "config": "agent.cli.config",
    "quarantine": "agent.cli.quarantine",
    "diagnostics": "agent.cli.diagnostics",
    "scan": "agent.cli.scan",
    "server": "refserver.cli",
    "demo": "agent.cli.demo",
    "ar": "agent.cli.ar",
    "active-response": "active_response.cli",
}
#: each subcommand's line in ``agentbus --help`` (a service's is its registry entry's
#: ``help``): here, so that the listing imports no subcommand module; the same text as the
#: module's ``HELP`` (tests/agent/test_imports.py holds them equal)
HELP = {
    "register": "enroll this agent with the server (once; --force to enroll again)",
    "run": "run the forwarder, commander, built-in executor and enabled collectors (foreground)",
    "sca": "security configuration assessment: run the collector, or 'sca run' to assess once",
    "send": "send JSON data objects (NDJSON on stdin, or one argument) as events",
    "status": "show every service's state and counters",
    "config": "show the effective configuration (--origin: where each value came from)",
    "quarantine": "list, retry or drop events the server refused (the forwarder's quarantine)",
    "scan": "make a running collector (inventory, fim, sca) scan now instead of at its interval",
    "diagnostics": "write one archive for support: versions, redacted config, status, logs (no secrets)",
    "server": "the reference server (run it, or query and drive a running one)",
    "demo": "run the whole system in a temporary directory and show it working",
    "ar": "active responses: list those in force, or try one here (dry-run unless --apply)",
    "active-response": "run the active-response executor (its own process and unit; not part of 'run')",
}


#: the end of ``agentbus --help``
EXAMPLES = """examples:
  agentbus register --enroll-url https://manager:55000 --user wazuh --password - < pw
  agentbus run --config /etc/agentbus/agentbus.toml
  agentbus status --json
  agentbus COMMAND --help      # every option of COMMAND, its default and examples"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line on stderr and exit 2, like every other failure.
        self.exit(EXIT_USAGE, f"agentbus: {message} (see '{self.prog} --help')\n")


class _Subcommands(argparse._SubParsersAction):
    """Subparsers that get their arguments (and import their module) once chosen."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: subcommand → what adds its arguments and ``func``, run once, when it is chosen;
        #: False: its module cannot be imported (then its arguments are ignored)
        self.loaders: dict[str, Callable[[argparse.ArgumentParser], bool]] = {}

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        name = values[0]
        load = self.loaders.pop(name, None)
        if load is not None and not load(self._name_parser_map[name]):
            values = values[:1]  # its func says what is missing, whatever was asked
        super().__call__(parser, namespace, values, option_string)


class _Version(argparse.Action):
    """``--version``: the version is read (importlib.metadata) only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, **kwargs
        )

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any) -> None:
        from core.version import __version__

        print(f"agentbus {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    from core import registry

    parser = _Parser(
        prog="agentbus",
        description="Endpoint security agent on a local ZeroMQ bus.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, help="show program's version number and exit")
    common = _Parser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        help="configuration file (default: $AGENTBUS_CONFIG, else the packaged default)",
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser, action=_Subcommands
    )
    assert isinstance(sub, _Subcommands)
    sub.required = True
    for name, module_name in SUBCOMMANDS.items():
        if name == SERVICES:
            for spec in registry.SERVICES:
                if spec.name in SUBCOMMANDS:
                    continue  # a module of its own runs it, and more (agentbus sca run)
                sub.add_parser(spec.name, parents=[common], help=spec.help, description=spec.help)
                sub.loaders[spec.name] = functools.partial(_load_service, spec)
            continue
        sub.add_parser(name, parents=[common], help=HELP[name], description=HELP[name])
        sub.loaders[name] = functools.partial(_load, name, module_name)
    return parser


def _load(name: str, module_name: str, p: argparse.ArgumentParser) -> bool:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        # The reference server is an optional extra; say how to get it.
        p.set_defaults(func=_unavailable(name, exc.name or "a dependency"))
        return False
    module.add_arguments(p)
    p.set_defaults(func=module.run)
    return True


def _load_service(spec: ServiceSpec, p: argparse.ArgumentParser) -> bool:
    from agent.cli import service

    service.add_arguments(p, spec)
    p.set_defaults(func=functools.partial(service.run, spec.name))
    return True


def _unavailable(name: str, missing: str) -> Callable[[argparse.Namespace], int]:
    def run(_args: argparse.Namespace) -> int:
        hint = " (pip install 'agentbus[server]')" if name in ("server", "demo") else ""
        print(f"agentbus: '{name}' needs {missing}, which is not installed{hint}", file=sys.stderr)
        return EXIT_USAGE

    return run


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        # This process's own command line (the `agentbus` script, `python -m agent.main`,
        # a service child of `agentbus run`): nothing it creates is for other users. A
        # caller that passes argv (a test, an embedding program) keeps its own umask.
        from core.private_dirs import restrict_umask

        restrict_umask()
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
