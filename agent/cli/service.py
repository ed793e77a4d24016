"""`agentbus <service>`: run one service of the registry alone, in the foreground.

The one way a service is started: by hand (``agentbus forwarder``, ``agentbus fim --once``)
and by the supervisor of ``agentbus run``, which runs ``python -m agent.main <name> --config
F`` for every enabled service of :data:`core.registry.SERVICES`.

SIGTERM or SIGINT stop a service gracefully (exit 0); a second signal exits at once —
nothing committed to disk is lost either way. The collectors send to the forwarder, and the
commander reports through it, so it must run too (``agentbus forwarder``).

A service that asks to be started again once stopped (the commander, when a ``restart``
command finds no supervisor) is re-executed here, with the same configuration file.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

from loguru import logger

from bus.errors import EXIT_RUNTIME, AgentbusError
from core import registry


def add_arguments(parser: argparse.ArgumentParser, spec: registry.ServiceSpec) -> None:
    from core.helpfmt import synopsis

    examples = [f"agentbus {spec.name} --config /etc/agentbus/agentbus.toml"]
    if spec.once:
        examples.append(f"agentbus {spec.name} --once     # one scan, then exit")
    synopsis(parser, *examples)
    if spec.once:
        parser.add_argument(
            "--once",
            action="store_true",
            help="scan once, report the differences and exit (default: run until stopped)",
        )


def run(name: str, args: argparse.Namespace) -> int:
    from agent.cli.common import service_setup

    spec = registry.get(name)
    service_cls = spec.load()
    if service_cls.gc_threshold is not None:
        gc.set_threshold(*service_cls.gc_threshold)
    config = service_setup(args, spec.name)
    service = service_cls.from_args(config, args)
    try:
        code = service.run()
    except AgentbusError:
        raise  # one line on stderr, with its exit code (agent.main)
    except Exception as exc:  # an unexpected error while starting
        logger.exception("{} failed to start", spec.name)
        print(f"agentbus {spec.name}: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    if service.reexec_requested:
        reexec(spec.name, config.source)
    return code


def reexec(command: str, config_file: str) -> None:
    """Replace this process by a fresh ``agentbus <command> --config F`` (new code too)."""
    argv = [sys.executable, "-m", "agent.main", command, "--config", config_file]
    logger.info("re-executing {}", " ".join(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
